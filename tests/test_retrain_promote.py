"""`propensity retrain` and `propensity promote --from-experiment` on a real MLflow store (tmp_path).

retrain: a small generated shop, a champion trained and promoted on its early weeks, then the CLI;
its snapshots, its seeded search, the gate, the alias and the serving config are checked against
the store and against values computed here. promote --from-experiment: exposure logs with planted
conversion rates decide between two registered versions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import polars as pl
import pytest
import yaml
from fairness_support import register_model, small_frame, xgb_model
from mlflow import MlflowClient

from propensity.cli.main import main

TRAIN_YAML = """
seed: 1
search: {families: [logistic_regression, xgboost], n_trials: 3, pruner: none}
tracking: {log_trials: true, plots: false}
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from features.shop.config import load_generate_config
    from features.shop.generate import generate

    out = tmp_path_factory.mktemp("shop")
    return generate(out / "shop", load_generate_config(users=1500, days=36, seed=3))


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _champion(shop, tmp_path, uri: str) -> str:
    """Train on the shop's first weeks and make it the champion (gate tag pass); returns its version."""
    from features.batch.pipeline import build_features
    from training.config import load_train_config
    from training.registry import set_alias, tag_version
    from training.train import train

    start = datetime(2026, 9, 1, tzinfo=UTC)
    week = timedelta(days=7)
    build_features(shop.events, shop.users, start + timedelta(days=21), week, 2, week,
                   tmp_path / "champ.parquet")
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    trained = train(tmp_path / "champ.parquet", load_train_config(tmp_path / "train.yaml",
                                                                  overrides={"tracking": {"uri": uri}}))
    tag_version(trained.registered_name, trained.registered_version, "fairness_gate", "pass")
    set_alias(trained.registered_name, "champion", trained.registered_version)
    return trained.registered_version


def _retrain(shop, tmp_path, uri: str, fairness_yaml: str, capsys, *extra: str) -> dict:
    (tmp_path / "fairness.yaml").write_text(fairness_yaml)
    main(["retrain", "--events", str(shop.events), "--users", str(shop.users), "--config",
          str(tmp_path / "train.yaml"), "--fairness-config", str(tmp_path / "fairness.yaml"),
          "--snapshots", "2", "--tracking-uri", uri, "--out", str(tmp_path / "retrain"), "--json", *extra])
    return json.loads(capsys.readouterr().out)


def test_retrain_stages_a_challenger_seeded_with_the_champion(shop, tmp_path, store, capsys) -> None:
    champion = _champion(shop, tmp_path, store)
    lenient = ("sensitive_features: [gender]\nmin_group_size: 30\n"
               "gate: {demographic_parity_ratio_min: 0.0, equalized_odds_difference_max: 1.0}\n")
    doc = _retrain(shop, tmp_path, store, lenient, capsys, "--recency-half-life", "5")
    latest = pl.read_parquet(shop.events).get_column("timestamp").max()  # bad rows keep theirs or none
    label_start = latest - timedelta(days=7)  # the latest label window that the data covers
    expected_as_of = datetime(label_start.year, label_start.month, label_start.day, tzinfo=UTC)
    assert datetime.fromisoformat(doc["as_of"]) == expected_as_of
    built = pl.read_parquet(doc["features"], columns=["as_of"]).get_column("as_of").unique().sort()
    assert built.to_list() == [expected_as_of - timedelta(days=7), expected_as_of]
    client = MlflowClient(store)
    champ_run = client.get_run(client.get_model_version("propensity-conversion", champion).run_id)
    family = champ_run.data.params["best_family"]
    assert doc["seeded_with"]["family"] == family
    challenger = doc["challenger"]
    run = client.get_run(client.get_model_version("propensity-conversion", challenger["version"]).run_id)
    query = f"tags.mlflow.parentRunId = '{run.info.run_id}' and tags.mlflow.runName = 'trial-0'"
    first_trial = client.search_runs([run.info.experiment_id], query)[0]
    assert first_trial.data.params["family"] == family  # the champion's parameters were tried first
    assert run.data.params["recency_half_life_days"] == "5.0"  # the flag reached the challenger's fit
    assert run.data.params["refit_with_validation"] == "True"  # retrain.refit_with_validation: true
    for key, value in champ_run.data.params.items():
        if key.startswith("best."):
            assert first_trial.data.params[key[len("best."):]] == value
    assert doc["fairness_gate"] in ("pass", "insufficient_evidence")
    assert challenger["alias"] == "challenger" and challenger["version"] == str(int(champion) + 1)
    assert _alias(client, "challenger") == challenger["version"] and _alias(client, "champion") == champion
    serving = yaml.safe_load((tmp_path / "work" / "serving.yaml").read_text())
    assert doc["serving_config"] == str(tmp_path / "work" / "serving.yaml")
    assert serving["model"] == "models:/propensity-conversion@champion"
    assert serving["experiment"]["enabled"] is True
    assert serving["experiment"]["challenger_model"] == "models:/propensity-conversion@challenger"
    assert serving["experiment"]["salt"] != "recommenders"

    # point values decide (no intervals): a DP ratio limit of 1.0 fails any real model
    strict = ("sensitive_features: [gender]\nmin_group_size: 30\ngate: {demographic_parity_ratio_min: 1.0}\n"
              "confidence: {method: off}\n")
    (tmp_path / "work" / "serving.yaml").unlink()
    refused = _retrain(shop, tmp_path, store, strict, capsys, "--no-refit")
    assert refused["fairness_gate"] == "fail" and refused["challenger"]["alias"] is None
    assert refused["serving_config"] is None and not (tmp_path / "work" / "serving.yaml").exists()
    assert _alias(client, "challenger") == challenger["version"]
    tags = client.get_model_version("propensity-conversion", refused["challenger"]["version"]).tags
    assert tags["fairness_gate"] == "fail"
    refused_run = client.get_run(client.get_model_version("propensity-conversion",
                                                          refused["challenger"]["version"]).run_id)
    assert refused_run.data.params["refit_with_validation"] == "False"
    assert refused_run.data.params["recency_half_life_days"] == "None"  # default: equal weights


def test_retrain_reads_epoch_timestamps_in_the_configured_unit(shop, tmp_path, monkeypatch) -> None:
    """"now" and the snapshots come from one read of the events, in ingest.timestamp_unit."""
    import shutil

    from training.retrain import fresh_snapshots

    configs = tmp_path / "configs"
    shutil.copytree("configs", configs)
    text = (configs / "features.yaml").read_text()
    (configs / "features.yaml").write_text(text.replace("timestamp_unit: null", "timestamp_unit: s"))
    monkeypatch.setenv("PROPENSITY_CONFIG_DIR", str(configs))
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    events = pl.read_parquet(shop.events).filter(pl.col("timestamp").is_not_null())
    latest = events.get_column("timestamp").max()
    epoch = events.with_columns(pl.col("timestamp").dt.epoch("s"))  # integer seconds since 1970
    epoch.write_parquet(tmp_path / "epoch.parquet")
    week = timedelta(days=7)
    now, as_of, out = fresh_snapshots(tmp_path / "epoch.parquet", shop.users, week, 2, week,
                                      tmp_path / "f.parquet")
    assert now == latest.replace(microsecond=0)
    label_start = latest - week
    assert as_of == datetime(label_start.year, label_start.month, label_start.day, tzinfo=UTC)
    assert pl.read_parquet(out, columns=["as_of"]).get_column("as_of").n_unique() == 2


def _alias(client: MlflowClient, alias: str) -> str:
    return str(client.get_model_version_by_alias("propensity-conversion", alias).version)


def test_retrain_without_a_champion_is_one_line(shop, tmp_path, store, capsys) -> None:
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    with pytest.raises(SystemExit) as exc:
        main(["retrain", "--events", str(shop.events), "--config", str(tmp_path / "train.yaml"),
              "--tracking-uri", store])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model: cannot resolve 'models:/propensity-conversion@champion'")
    assert "\n" not in err


def _links(as_of: datetime, n: int, feature: str, rng: np.random.Generator) -> pl.DataFrame:
    """A snapshot whose label follows ``feature`` (``x`` or ``z``), the other column being noise."""
    x, z = rng.standard_normal(n), rng.standard_normal(n)
    signal = x if feature == "x" else z
    label = (signal + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    return pl.DataFrame({"user_id": [f"u{i}" for i in range(n)], "as_of": [as_of] * n, "x": x, "z": z,
                         "label": label})


def test_refit_learns_from_the_validation_snapshot(tmp_path, store) -> None:
    """Two training snapshots where ``z`` decides, a validation snapshot (and the week after it)
    where ``x`` does, as after a concept shift: the candidate fitted on the training rows only ranks
    the week after no better than chance; refitted with the validation rows (the recency weights
    counted from them), it ranks it about as well as ``x`` itself, while the logged validation
    metrics stay the held-out candidate's. Without calibration: a calibrator fitted on the held-out
    candidate's scores (which carry no signal here) would flatten any ranking."""
    from sklearn.metrics import roc_auc_score

    from training.config import load_train_config
    from training.train import train

    rng = np.random.default_rng(7)
    day = datetime(2026, 9, 1, tzinfo=UTC)
    week = timedelta(days=7)
    frame = pl.concat([_links(day, 600, "z", rng), _links(day + week, 600, "z", rng),
                       _links(day + 2 * week, 600, "x", rng)])
    after = _links(day + 3 * week, 2000, "x", rng)
    y = after.get_column("label").to_numpy()
    client, results = MlflowClient(store), {}
    for refit in (False, True):
        cfg = load_train_config(overrides={
            "seed": 1, "calibration": "none", "data": {"features": ["x", "z"], "recency_half_life_days": 1.0,
                                "refit_with_validation": refit},
            "search": {"families": ["logistic_regression"], "n_trials": 1},
            "tracking": {"uri": store, "plots": False, "log_trials": False}})
        results[refit] = done = train(frame, cfg)
        assert client.get_run(done.run_id).data.params["refit_with_validation"] == str(refit)
        assert done.model.metadata["refit_with_validation"] is refit
    auc = {refit: roc_auc_score(y, done.model.predict_proba(after)) for refit, done in results.items()}
    best = roc_auc_score(y, after.get_column("x").to_numpy())  # x decides: no ranking does better
    assert abs(auc[False] - 0.5) < 0.05
    assert auc[True] > best - 0.01 and best > 0.8
    assert results[True].metrics["auc"] == pytest.approx(results[False].metrics["auc"])


# --- promote --from-experiment ------------------------------------------------------------------

def _two_versions(gate: str) -> None:
    """Version 1 = champion (gate pass), version 2 = challenger with the given gate tag."""
    from training.registry import set_alias, tag_version

    model = xgb_model(small_frame(400, seed=1), rounds=5)
    for version in ("1", "2"):
        register_model(model)
        tag_version("propensity-conversion", version, "fairness_gate", "pass" if version == "1" else gate)
    set_alias("propensity-conversion", "champion", "1")
    set_alias("propensity-conversion", "challenger", "2")


def _ab_files(tmp_path, rates: dict[str, float], n: int = 20_000, seed: int = 0) -> tuple[str, str]:
    """An exposure log (n users per variant, exposed over 7 days) and purchases at exactly ``rates``."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    rows, purchases = [], []
    for variant, rate in rates.items():
        bought = rng.permutation(n) < round(rate * n)
        for i in range(n):
            user, first = f"{variant}{i}", start + timedelta(seconds=int(rng.integers(0, 7 * 86_400)))
            rows.append((user, "champion-vs-challenger", variant, first))
            if bought[i]:
                purchases.append((f"e-{user}", user, first + timedelta(days=2), "purchase", 20.0))
    exposures = pl.DataFrame(rows, ["user_id", "experiment", "variant", "first_exposure"], orient="row")
    events = pl.DataFrame(purchases, ["event_id", "user_id", "timestamp", "event", "value"], orient="row")
    exposures.write_parquet(tmp_path / "exposures.parquet")
    events.write_parquet(tmp_path / "events.parquet")
    return str(tmp_path / "exposures.parquet"), str(tmp_path / "events.parquet")


def _decide(tmp_path, store, capsys, extra: tuple[str, ...] = ()) -> dict:
    exposures, events = tmp_path / "exposures.parquet", tmp_path / "events.parquet"
    main(["promote", "--from-experiment", "--exposures", str(exposures), "--events", str(events),
          "--tracking-uri", store, "--json", *extra])
    return json.loads(capsys.readouterr().out)


def _champion_version(store: str) -> str:
    return str(MlflowClient(store).get_model_version_by_alias("propensity-conversion", "champion").version)


def test_promote_from_experiment_promotes_a_non_inferior_challenger(tmp_path, store, capsys) -> None:
    _two_versions("insufficient_evidence")
    _ab_files(tmp_path, {"champion": 0.10, "challenger": 0.11})
    doc = _decide(tmp_path, store, capsys, ("--challenger-share", "0.5"))
    assert doc["non_inferiority"]["difference"] == pytest.approx(0.01, abs=1e-12)  # 2200/20000 - 2000/20000
    assert doc["users"] == {"champion": 20_000, "challenger": 20_000}
    assert doc["non_inferiority"]["verdict"] == "non_inferior" and doc["non_inferiority"]["ci_low"] > -0.005
    assert doc["promoted"] is True and _champion_version(store) == "2"


def test_promote_from_experiment_keeps_a_champion_beaten_beyond_the_margin(tmp_path, store, capsys) -> None:
    _two_versions("pass")
    _ab_files(tmp_path, {"champion": 0.10, "challenger": 0.07})
    doc = _decide(tmp_path, store, capsys, ("--margin", "0.01"))
    assert doc["non_inferiority"]["difference"] == pytest.approx(-0.03, abs=1e-12)
    assert doc["non_inferiority"]["verdict"] == "inferior" and doc["non_inferiority"]["ci_high"] < -0.01
    assert doc["promoted"] is False and "worse than the champion beyond the margin" in doc["reason"]
    assert _champion_version(store) == "1"


def test_promote_from_experiment_refuses_a_challenger_whose_gate_failed(tmp_path, store, capsys) -> None:
    _two_versions("fail")
    _ab_files(tmp_path, {"champion": 0.10, "challenger": 0.12})
    doc = _decide(tmp_path, store, capsys)
    assert doc["non_inferiority"]["verdict"] == "non_inferior"
    assert doc["promoted"] is False and doc["reason"] == "refused: the challenger failed its fairness gate"
    assert _champion_version(store) == "1"


def test_promote_from_experiment_says_when_the_test_is_inconclusive(tmp_path, store, capsys) -> None:
    _two_versions("pass")
    _ab_files(tmp_path, {"champion": 0.10, "challenger": 0.10}, n=2000)
    doc = _decide(tmp_path, store, capsys)
    assert doc["non_inferiority"]["verdict"] == "inconclusive" and doc["promoted"] is False
    assert doc["reason"].startswith("not shown non-inferior yet") and _champion_version(store) == "1"


def test_promote_from_experiment_needs_both_files(tmp_path, store, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["promote", "--from-experiment", "--exposures", str(tmp_path / "x.parquet"),
              "--tracking-uri", store])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: --from-experiment needs --exposures LOG and --events E")


def test_the_split_config_keeps_other_settings_and_refuses_the_recommender_salt(tmp_path) -> None:
    from propensity.errors import ConfigError
    from serving.config import load_serving_config, write_split_config

    base = tmp_path / "base.yaml"
    base.write_text("max_batch: 7\nexperiment: {salt: recommenders}\n")
    with pytest.raises(ConfigError, match="salt 'recommenders'"):
        write_split_config(tmp_path / "serving.yaml", "models:/m@champion", "models:/m@challenger", base=base,
                           reserved_salts=("recommenders",))
    assert not (tmp_path / "serving.yaml").exists()
    base.write_text("max_batch: 7\nexperiment: {salt: models}\n")
    write_split_config(tmp_path / "serving.yaml", "models:/m@champion", "models:/m@challenger", base=base,
                       reserved_salts=("recommenders",), challenger_share=0.3)
    cfg = load_serving_config(tmp_path / "serving.yaml")
    assert (cfg.max_batch, cfg.model, cfg.experiment.enabled) == (7, "models:/m@champion", True)
    assert (cfg.experiment.salt, cfg.experiment.challenger_share) == ("models", 0.3)
