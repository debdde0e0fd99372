import os
import tempfile

import pytest
import torch

# Tests never read or write the user's tuned-config cache (one folder per worker).
os.environ["TCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="tconv-test-cache-")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")


@pytest.fixture(autouse=True)
def fresh_seed(request):
    """Fresh random data every run; the seed is printed with a failure to replay it
    (TCONV_TEST_SEED=<seed>)."""
    seed = int(os.environ.get("TCONV_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
    torch.manual_seed(seed)
    request.node.user_properties.append(("seed", seed))
    yield seed


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None:
        for key, value in item.user_properties:
            if key == "seed":
                call.excinfo.value.args = (*call.excinfo.value.args, f"[TCONV_TEST_SEED={value}]")
