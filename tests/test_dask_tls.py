"""DaskExecutor on a TLS cluster, with real certificates.

A scheduler and a worker started as the command-line tools start them with
``--tls-ca-file/--tls-cert/--tls-key`` (tests/conftest.py DaskCluster), and a local
cluster that DaskExecutor starts with ``security=True``: the contract's cases that
touch the workers (a result, an exception, cancel and task_timeout killing the task's
process) over TLS; then connecting without credentials or with a different CA's fails
at once with an error that says so, and leaves no thread behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import corral
from corral import testing

distributed = pytest.importorskip("distributed")
pytest.importorskip("cryptography", reason="TLS credentials need the cryptography package")

from tests.conftest import DaskCluster, TLSFiles, gone  # noqa: E402

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles.temporary(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="module")
def tls_cluster(credentials: TLSFiles) -> Iterator[DaskCluster]:
    cluster = DaskCluster(workers=1, nthreads=2, tls=credentials)
    try:
        yield cluster
    finally:
        cluster.stop()


def read_pid(path: Path) -> int:
    testing.wait_until(path.exists, testing.slack(30), 0.005, "the task's pid file")
    return int(path.read_text().split()[0])


def test_the_work_cancel_and_timeouts_over_tls(
    tls_cluster: DaskCluster, credentials: TLSFiles, tmp_path: Path
) -> None:
    assert tls_cluster.address.startswith("tls://127.0.0.1:")
    with corral.DaskExecutor(tls_cluster.address, security=credentials.security()) as ex:
        assert ex.client.scheduler_info()["address"].startswith("tls://")
        assert list(ex.map(testing.square, range(6))) == [0, 1, 4, 9, 16, 25]
        error = ex.submit(testing.fail, "over TLS").exception(timeout=60)
        assert isinstance(error, ValueError) and str(error) == "over TLS"
        assert "in fail" in error.__cause__.tb  # type: ignore[union-attr]

        running = ex.submit(testing.write_pids_and_hang, str(tmp_path / "cancelled"))
        inner = read_pid(tmp_path / "cancelled")
        assert running.cancel()
        testing.wait_until(lambda: gone(inner), testing.slack(10), 0.005, "the task's end")

        late = ex.options(task_timeout=testing.slack(3)).submit(
            testing.write_pids_and_hang, str(tmp_path / "timed-out")
        )
        inner = read_pid(tmp_path / "timed-out")
        with pytest.raises(corral.TaskTimeout):
            late.result(timeout=testing.slack(60))
        testing.wait_until(lambda: gone(inner), testing.slack(10), 0.005, "the task's end")
        assert ex.submit(testing.square, 9).result(timeout=60) == 81


def test_a_local_cluster_with_temporary_credentials(tmp_path: Path) -> None:
    with corral.DaskExecutor(n_workers=1, threads_per_worker=1, security=True) as ex:
        assert ex.client.scheduler.address.startswith("tls://127.0.0.1:")
        assert ex.client.security.require_encryption
        running = ex.submit(testing.write_pids_and_hang, str(tmp_path / "pid"))
        inner = read_pid(tmp_path / "pid")
        assert running.cancel()
        testing.wait_until(lambda: gone(inner), testing.slack(10), 0.005, "the task's end")
        assert ex.submit(testing.add, 2, 3).result(timeout=60) == 5


def test_no_credentials_for_a_tls_address_is_a_clear_error(tls_cluster: DaskCluster) -> None:
    with pytest.raises(ValueError, match=r"TLS address.*no TLS credentials.*security="):
        corral.DaskExecutor(tls_cluster.address, connect_timeout=10)
    # the autouse leak check: no thread (the Dask client's event loop) left behind


def test_a_certificate_from_another_ca_is_refused(tls_cluster: DaskCluster, tmp_path: Path) -> None:
    stranger = TLSFiles.temporary(str(tmp_path))
    with pytest.raises(OSError, match="TLS certificate does not match"):
        corral.DaskExecutor(tls_cluster.address, security=stranger.security(), connect_timeout=10)


def test_plain_tcp_with_encryption_required_is_refused(
    tls_cluster: DaskCluster, credentials: TLSFiles
) -> None:
    address = tls_cluster.address.replace("tls://", "tcp://")
    with pytest.raises(RuntimeError, match="encryption required"):
        corral.DaskExecutor(address, security=credentials.security(), connect_timeout=10)


def test_an_unreachable_scheduler_is_an_error_and_leaves_nothing() -> None:
    with pytest.raises(OSError):  # (TimeoutError is an OSError)
        corral.DaskExecutor("tcp://127.0.0.1:1", connect_timeout=2)
