"""Write geodite/data/files/benchmark-formulas.txt: the multi-element reduced formulas of every shipped
benchmark input (geodite.train.compliance.benchmark_inputs), which generated pool structures must avoid.

    PYTHONPATH=. python tools/benchmark_formulas.py [--data-root ../shared/data]

tests/train/test_pool_v8.py checks that the committed list is the one this writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geodite.train.compliance import benchmark_inputs, formula_list_path, multi_element_formulas
from geodite.train.pools import default_data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    args = parser.parse_args()
    formulas = multi_element_formulas(benchmark_inputs(args.data_root))
    formula_list_path().write_text("".join(f"{f}\n" for f in formulas))
    print(f"{len(formulas)} formulas → {formula_list_path()}")


if __name__ == "__main__":
    main()
