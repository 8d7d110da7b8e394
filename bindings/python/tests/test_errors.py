"""Error codes and classes: the same bad input gives the same code and class name as in Node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import queuexec

# Shared with bindings/node/test/api.test.js.
CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "error-codes.json").read_text()
)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_the_same_bad_input_gives_the_same_code_and_class_as_in_node(
    case: dict[str, Any], tokens: dict[str, str], isolated: Path
) -> None:
    kwargs: dict[str, Any] = dict(tokens)
    if "transferEncryptToken" in case:
        kwargs["transfer_encrypt_token"] = case["transferEncryptToken"]
    if "store" in case:
        kwargs["store"] = isolated / case["store"]
    if "listen" in case:
        kwargs["listen"] = [case["listen"]]
    with pytest.raises(queuexec.QueuexecError) as caught:
        queuexec.Master(**kwargs).close()
    assert caught.value.code == case["code"], str(caught.value)
    assert type(caught.value).__name__ == case["class"], str(caught.value)


def test_every_class_names_its_code_and_the_codes_are_distinct() -> None:
    classes = [
        queuexec.TokenError,
        queuexec.TokenMismatchError,
        queuexec.EnvelopeError,
        queuexec.AssetPathError,
        queuexec.AssetHashError,
        queuexec.IoError,
        queuexec.StoreError,
        queuexec.PayloadError,
        queuexec.ConfigError,
        queuexec.NetworkError,
        queuexec.ProtocolError,
        queuexec.UnauthorizedError,
        queuexec.DependencyError,
        queuexec.ClosedError,
    ]
    codes = [cls.code for cls in classes]
    assert all(code.startswith("ERR_QUEUEXEC_") for code in codes)
    assert len(set(codes)) == len(codes)
    assert queuexec.FileError is queuexec.IoError


def test_every_code_of_the_core_has_its_own_class_whose_code_it_is() -> None:
    from queuexec import _native, exceptions

    classes = {
        cls.code: cls
        for cls in vars(exceptions).values()
        if isinstance(cls, type) and issubclass(cls, queuexec.QueuexecError) and cls is not queuexec.QueuexecError
    }
    assert _native.ERROR_CODES, "the core names its codes"
    missing = [code for code in _native.ERROR_CODES if code not in classes]
    assert missing == [], f"core codes without a Python class: {missing}"


def test_a_core_error_carries_its_code_on_the_exception(tokens: dict[str, str]) -> None:
    with pytest.raises(queuexec.ConfigError) as caught:
        queuexec.Master(**tokens, listen="not a multiaddr", announce=False).close()
    assert caught.value.code == "ERR_QUEUEXEC_CONFIG"
    assert vars(caught.value)["code"] == "ERR_QUEUEXEC_CONFIG", "set on the instance from the core's error"
