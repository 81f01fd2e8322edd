"""Every row of the hostile-input table: a clear message naming the file, the right exit code,
no traceback, nothing lost (see ``harness.py``)."""

import importlib
import pkgutil

import pytest

import tests.hostile
from tests.hostile.harness import assert_case

CASES = [case for info in pkgutil.iter_modules(tests.hostile.__path__)
         if info.name.startswith("cases_")
         for case in importlib.import_module(f"tests.hostile.{info.name}").CASES]


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, tmp_path):
    assert_case(case, tmp_path)
