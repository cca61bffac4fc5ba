"""Benchmark metrics as small pure functions (numpy/pandas in, numbers/DataFrames out).

Modules:
    discovery  -- stability classification, F1/DAF/precision/... (Matbench Discovery); discovery rows → metrics
    cps        -- combined performance score
    phonons    -- thermal-conductivity SRD/SRE/SRME; kappa rows → metrics
    diatomics  -- homonuclear dimer curve self-consistency metrics (diatomics_pbe: against PBE, the combined
                  dimer score; diatomics_scores: a curve's row of metrics, rows → the benchmark's means and CDS)
    rdf        -- radial distribution functions, RDF overlap/error, MSD and diffusion
    md         -- an MD run's scores against AIMD (RDF overlap, MBD's rdf_error, Li diffusion); rows → means

No function here does I/O; definitions follow docs/benchmarks.md.
"""
