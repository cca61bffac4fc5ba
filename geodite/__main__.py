"""`python -m geodite ...` is the `geodite` command; under torchrun: `torchrun --nproc_per_node 2 -m geodite train`."""

from geodite.cli.main import app

app()
