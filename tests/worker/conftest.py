"""Fixtures for the worker tests: real worker processes behind a fake shim."""

import sys

import pytest

from fakeshim import APPS, Worker

sys.path.insert(0, APPS)  # the tests read tables from the test apps


@pytest.fixture
def spawn():
    """Start workers (not yet configured); all are killed after the test."""
    workers = []

    def make(**kwargs):
        worker = Worker(**kwargs)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.kill()


@pytest.fixture
def serve(spawn):
    """A ready worker running testapps:NAME (or a full "module:name")."""

    def make(app, **kwargs):
        worker = spawn(app=app if ":" in app else "testapps:" + app, **kwargs)
        worker.ready()
        return worker

    return make
