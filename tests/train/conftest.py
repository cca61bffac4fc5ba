import pytest

from train_helpers import MPTRJ_10_DB


@pytest.fixture
def mptrj10():
    if not MPTRJ_10_DB.exists():
        pytest.skip(f"test data missing: {MPTRJ_10_DB}")
    return MPTRJ_10_DB
