"""Studies built directly with Optuna in a real SQLite file, shaped like the search service's records
(docs/internals.md): constraint `peak_memory` = peak_gib - budget_gib, user attrs per trial."""

from __future__ import annotations

import contextlib
import json
import random
import socketserver
import threading
import urllib.request
import wsgiref.simple_server
from typing import Any, Iterator

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from scent_search.records import BREAKDOWN_KEYS, GIB

optuna.logging.set_verbosity(optuna.logging.WARNING)

BUDGET = 3.0  # GiB: some random configs exceed it
SPACE = {
    "hidden_dim": CategoricalDistribution([128, 256, 512]),
    "mult": CategoricalDistribution([2, 4]),
    "num_decoder_layers": CategoricalDistribution([1, 2, 3]),
    "share_scales": CategoricalDistribution([False, True]),
    "sigma_ls": CategoricalDistribution(["64", "128,32", "128,64,32"]),
}


def _peak_gib(p: dict[str, Any]) -> float:
    scales = len(p["sigma_ls"].split(","))
    return 0.6 + 2e-5 * p["hidden_dim"] * p["mult"] * p["num_decoder_layers"] * scales * 16


ALLOWANCE = 256 * 2**20  # memory.RESERVED_ALLOWANCE_BYTES
MARGIN = 0.10  # memory.DEFAULT_MARGIN


def _breakdown(allocated: int) -> dict[str, int]:
    shares = [0.05, 0.08, 0.07, 0.2, 0.2, 0.1, 0.01, 0.06, 0.06, 0.12, 0.05]
    out = {c: int(s * allocated) for c, s in zip(BREAKDOWN_KEYS, shares)}
    out["other"] += allocated - sum(out.values())  # a breakdown sums to the allocated peak
    return out


def peak_attrs(peak_gib: float, budget: float = BUDGET) -> dict[str, Any]:
    """The peak's user attrs of a predicted peak of `peak_gib` (the constraint's figure), as the search
    writes them: allocated x (1 + margin) + allowance = the constraint's bytes."""
    constraint = int(peak_gib * GIB)
    allocated = int((constraint - ALLOWANCE) / (1 + MARGIN))
    return {"peak_gib": constraint / GIB, "constraint_bytes": constraint, "peak_allocated_bytes": allocated,
            "peak_reserved_bytes": constraint, "peak_source": "predicted", "calibration_margin": MARGIN,
            "calibration_pairs": 0, "reserved_allowance_bytes": constraint - int(allocated * (1 + MARGIN)),
            "budget_gib": budget, "feasible": peak_gib <= budget, "breakdown": _breakdown(allocated)}


def trial_record(params: dict[str, Any], state: TrialState, budget: float = BUDGET, psnr: float | None = None,
                 peak_gib: float | None = None, **extra: Any) -> optuna.trial.FrozenTrial:
    """A finished trial as the search service leaves it. Over the budget: PRUNED, no value, no report
    (`state` COMPLETE with no `psnr`: an older study's infeasible trial, the bicubic PSNR its value).
    PRUNED with a `psnr`: pruned at eval point 2 with that PSNR."""
    peak = _peak_gib(params) if peak_gib is None else peak_gib
    if peak > budget and state == TrialState.PRUNED:
        psnr = None
    user_attrs: dict[str, Any] = {**peak_attrs(peak, budget),
                                  "n_params": params["hidden_dim"] ** 2 * params["mult"] * 7, "bicubic_psnr": 24.0}
    if psnr is not None and state == TrialState.COMPLETE:
        user_attrs.update(psnr=psnr, steps_per_s=10.0 / peak)
    user_attrs.update(extra)
    kwargs: dict[str, Any] = {}
    if state == TrialState.COMPLETE:
        kwargs["value"] = psnr if psnr is not None else 24.0  # an older study's infeasible trial: the bicubic floor
    if state == TrialState.PRUNED and psnr is not None:
        kwargs["intermediate_values"] = {0: psnr - 1.0, 1: psnr}
    return optuna.trial.create_trial(
        params=params, distributions=SPACE, state=state, user_attrs=user_attrs,
        system_attrs={"constraints:peak_memory": peak - budget}, **kwargs)


def make_study(storage: str, name: str, trials: list[optuna.trial.FrozenTrial], budget: float = BUDGET,
               spec: bool = True) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    if spec:
        study.set_user_attr("spec", {"budget_gib": budget, "target_shape": {
            "batch_size": 64, "queries": 1024, "lr_size": 32, "precision": "bf16"}, "train": {"eval_points": 3}})
        study.set_user_attr("device", "cpu (predicted)")
    study.add_trials(trials)
    return study


def random_trials(n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    """n trials of every status: feasible (trained), infeasible, pruned and failed."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = {k: rng.choice(d.choices) for k, d in SPACE.items()}
        peak = _peak_gib(p)
        psnr = round(24.0 + 2.0 * p["num_decoder_layers"] ** 0.5 + p["hidden_dim"] / 256 + rng.gauss(0, 0.3), 1)
        if peak > BUDGET:
            out.append(trial_record(p, TrialState.PRUNED))  # infeasible: not trained
        elif i % 7 == 3:
            out.append(trial_record(p, TrialState.PRUNED, psnr=psnr - 1.5))
        elif i % 11 == 5:
            out.append(trial_record(p, TrialState.FAIL, fail_reason="oom"))
        else:
            out.append(trial_record(p, TrialState.COMPLETE, psnr=psnr))
    return out


@contextlib.contextmanager
def dashboard_server(storage: optuna.storages.BaseStorage) -> Iterator[str]:
    """optuna-dashboard's WSGI app on a free loopback port in a thread; yields its base URL."""
    import optuna_dashboard

    class Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
        daemon_threads = True

    class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = wsgiref.simple_server.make_server("127.0.0.1", 0, optuna_dashboard.wsgi(storage),
                                               server_class=Server, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


P_DEFAULT = {"hidden_dim": 256, "mult": 2, "num_decoder_layers": 2, "share_scales": False, "sigma_ls": "64"}
