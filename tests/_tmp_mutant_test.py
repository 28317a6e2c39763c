import threading, pytest
from codeformer_core.weights import WeightStore
from tests.test_weights import *  # noqa
from tests.fake_hub import fake_hub  # noqa

@pytest.fixture(autouse=True)
def no_file_lock(monkeypatch):
    monkeypatch.setattr(WeightStore, "_lock_for", lambda self, name: threading.Lock())
