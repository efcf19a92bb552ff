"""The typed Result against the contract consumers see (outputs/schemas/result.schema.json)."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
from pydantic import ValidationError

from inspector.core.frames import Frame
from inspector.core.result import ERROR_CODE, Defect, Latency, RecipeRef, Result
from inspector.decision.results import ResultBuilder, schema
from inspector.decision.verdict import Verdict
from inspector.inference.detectors.base import Detection

SCHEMA = schema("result")


def _names(model) -> set[str]:
    return {f.alias or n for n, f in model.model_fields.items()}


def test_model_fields_are_the_schema_properties():
    props = SCHEMA["properties"]
    assert _names(Result) == set(props)
    assert _names(RecipeRef) == set(props["recipe"]["properties"])
    assert _names(Defect) == set(props["defects"]["items"]["properties"])
    assert _names(Latency) == set(props["latency_ms"]["properties"])


def _built(defects: list[Detection], accepted: list[bool]) -> Result:
    frame = Frame(np.zeros((64, 80), np.uint8), "cam0", 7, "P-7", 1.0, t_arrival=2.0,
                  stamps={"queue": 2.001, "preprocess": 2.002, "infer": 2.01, "decide": 2.011})
    verdict = Verdict(not any(accepted), 11 if any(accepted) else 0, 0.9, ["scratch: 1 > 0"],
                      accepted)
    return ResultBuilder("sess").build(frame, defects, verdict,
                                       {"id": "r", "rev": 2, "sha256": "a" * 64}, "b" * 64,
                                       0.1, offset=(3, 4))


def test_built_results_are_schema_valid_payloads():
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    dets = [Detection("scratch", 0.93, (10, 12, 6, 4), mask, 6.0, "scratch-1"),
            Detection("unknown", 0.7, (30, 30, 8, 8), None, 64.0, None, unknown=True)]
    r = _built(dets, [True, False])
    doc = r.payload()
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert set(SCHEMA["required"]) <= set(doc)
    assert doc["defects"][0]["class"] == "scratch" and "mask" in doc["defects"][0]
    assert "mask" not in doc["defects"][1] and doc["defects"][1]["prompt_id"] is None
    assert doc["defects"][0]["bbox"] == [13.0, 16.0, 6.0, 4.0]  # frame coordinates
    # the typed fields the sinks and the archive read
    assert r.verdict == "NG" and r.code == 11 and r.defects[0].accepted
    assert Result.from_payload(doc).payload() == doc  # a JSONL line reads back the same
    ok = _built([], []).payload()
    jsonschema.Draft202012Validator(SCHEMA).validate(ok)


@pytest.mark.parametrize("change", [{"verdict": "MAYBE"}, {"score": 1.5}, {"camera": "a/b"},
                                    {"seq": -1}, {"extra": 1}])
def test_a_result_outside_the_contract_is_refused(change):
    doc = _built([], []).payload() | change
    with pytest.raises(ValidationError):
        Result.from_payload(doc)
    with pytest.raises(jsonschema.ValidationError):  # the schema says no to the same
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)


def test_a_detection_outside_the_contract_gives_an_error_ng_with_the_next_seq():
    """A detector's NaN score cannot become a result: the part is rejected as "could not
    be inspected" (fail safe for the reject gate), and seq has no gap."""
    builder = ResultBuilder("sess")
    frame = Frame(np.zeros((64, 80), np.uint8), "cam0", 1, "P-1", 1.0, t_arrival=2.0,
                  stamps={"decide": 2.01})
    ok = Verdict(True, 0, 0.0, [], [False])
    bad = builder.build(frame, [Detection("scratch", float("nan"), (1, 1, 4, 4))], ok,
                        {"id": "r", "rev": 1, "sha256": "a" * 64}, "b" * 64, 0.1)
    assert bad.verdict == "NG" and bad.code == ERROR_CODE and bad.defects == []
    assert bad.reasons[0].startswith("inspection error: result outside the contract:")
    jsonschema.Draft202012Validator(SCHEMA).validate(bad.payload())
    nxt = builder.build(frame, [], Verdict(True, 0, 0.0, [], []),
                        {"id": "r", "rev": 1, "sha256": "a" * 64}, "b" * 64, 0.1)
    assert (bad.seq, nxt.seq) == (0, 1)
