"""Benchmark metrics as small pure functions (numpy/pandas in, numbers/DataFrames out).

Modules:
    discovery  -- stability classification, F1/DAF/precision/... (Matbench Discovery); discovery rows → metrics
    cps        -- combined performance score
    phonons    -- thermal-conductivity SRD/SRE/SRME; kappa rows → metrics
    diatomics  -- homonuclear dimer curve self-consistency and PBE-relative metrics
    rdf        -- radial distribution functions, RDF overlap/error, MSD and diffusion

No function here does I/O; definitions follow docs/benchmarks.md.
"""
