"""Fuzz (issue #16): invalid `.nir` metadata and invalid config values, drawn by hypothesis,
never give a traceback or exit 0 — each is one `error:` line and exit code 2.

Every strategy draws only values that are invalid for their field (a wrong type, NaN or an
infinity, out of range, disagreeing with the graph or the env), so every case must be refused.
Deterministic (`derandomize=True`): the same cases on every run.
"""

from __future__ import annotations

import json
import math

import nir
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import assert_refused, invoke

NIR_CASES = 200
CONFIG_CASES = 300
FUZZ = dict(derandomize=True, deadline=None, database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

nan, inf = float("nan"), float("inf")
non_finite = st.sampled_from([nan, inf, -inf])
not_a_number = st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2), st.none())
not_an_integer = st.one_of(not_a_number, non_finite, st.floats(allow_nan=False, allow_infinity=False))
non_positive = st.one_of(st.integers(max_value=0), st.floats(max_value=0, allow_nan=False), non_finite)


def non_positive_int(below: int = 1):
    """Integers < `below`, and anything that is not an integer."""
    return st.one_of(st.integers(max_value=below - 1), not_an_integer)


def lists_of(bad_element, length: int):
    """Lists of `length` numbers with at least one bad element, wrong lengths, non-lists."""
    good = st.floats(min_value=0.1, max_value=5)
    with_bad = st.lists(good, min_size=length - 1, max_size=length - 1).flatmap(
        lambda rest: bad_element.flatmap(lambda bad: st.permutations([bad, *rest])))
    wrong_length = st.integers(0, 8).filter(lambda n: n != length).flatmap(
        lambda n: st.lists(good, min_size=n, max_size=n))
    return st.one_of(with_bad, wrong_length, st.text(max_size=3), st.integers())


# ---------------------------------------------------------------------------- .nir metadata

OBS, CONTEXT = 4, 4  # the tiny CartPole DT of conftest: obs_dim 4, context 4 (12 tokens)

#: spikingmind metadata field -> invalid values
NIR_FIELDS = {
    "normalization.obs_std": lists_of(st.one_of(non_positive, not_a_number), OBS),
    "normalization.obs_mean": lists_of(st.one_of(non_finite, not_a_number), OBS),
    "normalization.return_scale": st.one_of(non_positive, not_a_number),
    "normalization.return_gain": st.one_of(non_positive, not_a_number),
    "normalization.max_episode_steps": non_positive_int(),
    "token_layout.context_length": st.one_of(non_positive_int(), st.integers(1, 10**12).filter(lambda k: k != CONTEXT)),
    "token_layout.obs_dim": st.one_of(non_positive_int(), st.integers(1, 10**6).filter(lambda d: d != OBS)),
    "token_layout.act_dim": st.one_of(non_positive_int(), st.integers(3, 10**6)),
    "token_layout.discrete": st.one_of(st.just(False), st.integers(), st.text(max_size=3), st.none()),
    "env.env_id": st.one_of(st.text(max_size=12).filter(lambda t: t != "CartPole-v1"), st.integers(), st.none(),
                            st.lists(st.text(max_size=3), max_size=2)),
    "decode.token_index": st.one_of(st.integers().filter(lambda i: i != 3 * CONTEXT - 2), not_an_integer),
    "action_kind": st.one_of(st.text(max_size=8).filter(lambda t: t != "discrete"), st.integers(), st.none()),
    "time_steps": st.one_of(non_positive_int(), st.integers(5, 10**12), st.integers(2, 3)),
    "decode": st.one_of(st.text(min_size=1, max_size=3), st.integers().filter(bool),  # falsy: no decode table
                        st.lists(st.integers(), min_size=1, max_size=2)),
    "normalization": st.one_of(st.text(max_size=3), st.integers(), st.none()),
}
#: top-level graph metadata key -> invalid values (what h5py can store)
TOP_FIELDS = {
    "time_steps": st.one_of(st.integers(max_value=0), st.integers(10**9, 10**15), st.floats(allow_nan=True),
                            st.text(alphabet="tsxyz ", min_size=1, max_size=4)),
    "dt": st.one_of(st.floats(max_value=0), non_finite, st.text(alphabet="dtxyz ", min_size=1, max_size=4)),
    "spikingmind": st.one_of(st.text(max_size=8), st.just("[]"), st.just("5"), st.just("{\"action_kind\": ")),
}


@pytest.fixture(scope="module")
def graph(snn_checkpoint):
    from spikingmind.export.nir import checkpoint_to_graph

    return checkpoint_to_graph(snn_checkpoint)


def _set(meta: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for parent in parents:
        meta = meta[parent]
    meta[leaf] = value


@settings(max_examples=NIR_CASES, **FUZZ)
@given(case=st.one_of(
    st.sampled_from(sorted(NIR_FIELDS)).flatmap(lambda f: st.tuples(st.just("spikingmind"), st.just(f), NIR_FIELDS[f])),
    st.sampled_from(sorted(TOP_FIELDS)).flatmap(lambda f: st.tuples(st.just("top"), st.just(f), TOP_FIELDS[f]))))
def test_invalid_nir_metadata_is_one_line_and_exit_2(graph, tmp_path, case):
    where, field, value = case
    meta = json.loads(graph.metadata["spikingmind"])
    top = dict(graph.metadata)
    if where == "spikingmind":
        _set(meta, field, value)
        top["spikingmind"] = json.dumps(meta)
    else:
        top[field] = value
    path = tmp_path / "fuzzed.nir"
    path.unlink(missing_ok=True)
    nir.write(path, nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=top, type_check=False))
    result = invoke("evaluate", path, "--episodes", "1", "--max-steps", "2")
    assert_refused(result)


# ---------------------------------------------------------------------------- config TOML values

probability = st.one_of(st.floats(max_value=-1e-9, allow_nan=False), st.floats(min_value=1 + 1e-9), non_finite,
                        not_a_number)
#: [train] / [model] key -> invalid values (the tiny config of conftest otherwise)
CONFIG_FIELDS = {
    "train.steps": non_positive_int(),
    "train.batch_size": st.one_of(non_positive_int(), st.integers(10**8, 10**15)),
    "train.seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63, max_value=2**64), not_an_integer),
    "train.lr": st.one_of(non_positive, not_a_number),
    "train.weight_decay": st.one_of(st.floats(max_value=-1e-9, allow_nan=False), non_finite, not_a_number),
    "train.warmup_steps": non_positive_int(0),
    "train.grad_clip": st.one_of(non_positive, not_a_number),
    "train.eval_every": non_positive_int(),
    "train.eval_episodes": non_positive_int(),
    "train.spike_rate_weight": st.one_of(st.floats(max_value=-1e-9, allow_nan=False), non_finite, not_a_number),
    "train.spike_rate_target": probability,
    "train.energy_weight": st.one_of(st.floats(max_value=-1e-9, allow_nan=False), non_finite, not_a_number),
    "train.stop_at_return": st.one_of(non_finite, st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2)),
    "train.return_gain": st.one_of(non_positive, st.text(max_size=3), st.booleans()),
    "train.continuous_loss": st.one_of(st.text(max_size=8).filter(lambda t: t not in ("squashed", "pre_squash")),
                                       st.integers(), st.booleans()),
    "model.width": st.one_of(non_positive_int(), st.integers(10**5, 10**9)),
    "model.n_blocks": st.one_of(non_positive_int(), st.integers(10**6, 10**9)),
    "model.mlp_ratio": st.one_of(non_positive_int(), st.integers(10**6, 10**9)),
    "model.context_length": st.one_of(non_positive_int(), st.integers(10**5, 10**12)),
    "model.time_steps": st.one_of(non_positive_int(), st.integers(10**6, 10**12)),
    "model.beta": st.one_of(st.floats(max_value=0, allow_nan=False), st.floats(min_value=1), non_finite, not_a_number),
    "model.threshold": st.one_of(non_positive, not_a_number),
    "model.surrogate_slope": st.one_of(non_positive, not_a_number),
    "model.mix_decay_init": lists_of(st.one_of(st.floats(max_value=0, allow_nan=False), st.floats(min_value=1),
                                               non_finite, not_a_number), 2),
    "model.n_heads": st.one_of(non_positive_int(), st.sampled_from([3, 5, 7, 32])),  # 16 channels: not divisible
}


def toml_value(value) -> str:
    if value is None:  # TOML has no null: the string, as invalid for every field fuzzed here
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == inf else "-inf" if value == -inf else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise AssertionError(f"no TOML for {value!r}")


@pytest.fixture(scope="module")
def tiny_tables(cartpole_dataset) -> dict:
    from tests.support.checkpoints import tiny_train_config

    cfg = tiny_train_config(cartpole_dataset).to_dict()
    model = {k: v for k, v in cfg.pop("model").items() if k != "kind"}
    train = {k: v for k, v in cfg.items() if v is not None and k not in ("env_id", "dataset")}
    return {"train": train, "model": model}


@settings(max_examples=CONFIG_CASES, **FUZZ)
@given(case=st.sampled_from(sorted(CONFIG_FIELDS)).flatmap(lambda f: st.tuples(st.just(f), CONFIG_FIELDS[f])))
def test_invalid_config_values_are_one_line_and_exit_2(tiny_tables, cartpole_dataset, tmp_path, case):
    field, value = case
    table, key = field.split(".")
    tables = {name: dict(values) for name, values in tiny_tables.items()}
    tables[table][key] = value
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
                   for name, values in tables.items())
    config = tmp_path / "fuzzed.toml"
    config.write_text(text)
    result = invoke("train", "--env", "CartPole-v1", "--model", "snn", "--dataset", cartpole_dataset,
                    "--config", config, "--out", tmp_path / "run")
    assert_refused(result, str(config))
    assert not (tmp_path / "run").exists()
