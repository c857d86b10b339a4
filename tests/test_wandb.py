"""W&B logging: a real offline run, read back from its own log file and by the report, and the fallbacks."""

import json
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bpdip.records import read_summary
from bpdip.runner import run_cell


@pytest.fixture(scope="module")
def cfg_of(compose_config):
    return lambda *o: compose_config("experiment=smoke", "results_root=null", "logger=wandb", *o)


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline ``run-*.wandb`` file (LevelDB log format after a
    7-byte ':W&B' header: 32 KiB blocks of chunks with a 7-byte header each)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 or pos + 7 + n > len(data):  # padding, or a chunk still being written
            break
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def test_offline_run_logs_config_curves_mean_images_and_summary(cfg_of, tmp_path, recwarn):
    summary = run_cell(cfg_of(), tmp_path)
    trouble = [str(w.message) for w in recwarn if "W&B" in str(w.message)]
    assert not trouble, trouble  # W&B started and logged without falling back
    [run_file] = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    # W&B's service process may still be writing after finish() returns: wait for its exit record
    records = finished_records(run_file)
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.run_group, run.display_name, run.project) == ("uniform-0.3", "bp", "bpdip")
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["loss"]["name"] == "bp" and config["kernel"] == {"name": "uniform", "size": 9}
    assert config["data"]["crop"] == 40  # the resolved config, as plain values

    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    for name in ("face", "comic"):
        logged = [(h["iteration"], h[f"curve/{name}/psnr"]) for h in history if f"curve/{name}/psnr" in h]
        expected = metrics[metrics.image == name]
        assert logged == list(zip(expected.iteration, expected.psnr))
        for col in ("clean_psnr", "average_psnr", "average_ssim_dr2"):  # the output streams (issue 20)
            logged = [(h["iteration"], h[f"curve/{name}/{col}"]) for h in history if f"curve/{name}/{col}" in h]
            assert logged == list(zip(expected.iteration, expected[col]))
    mean = metrics.groupby("iteration").psnr.mean()
    logged_mean = {h["iteration"]: h["mean/psnr"] for h in history if "mean/psnr" in h}
    assert logged_mean == pytest.approx(mean.to_dict(), rel=1e-12)
    running = [h for h in history if "running/mean_final_psnr" in h]
    assert [h["images_done"] for h in running] == [1, 2]
    assert running[1]["running/mean_final_psnr"] == pytest.approx(
        (summary["images"]["face"]["final_psnr"] + summary["images"]["comic"]["final_psnr"]) / 2)

    final = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            final.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in r.summary.update})
    assert final["table1/psnr"] == pytest.approx(mean.max(), rel=1e-12)
    assert final["table1/iteration"] == mean.idxmax()
    assert final["image/face/final_psnr"] == pytest.approx(summary["images"]["face"]["final_psnr"])
    average = metrics.groupby("iteration").average_psnr.mean()
    assert final["streams/average/table1/psnr"] == pytest.approx(average.max(), rel=1e-12)
    assert final["streams/average/table1/iteration"] == average.idxmax()
    assert final["streams/clean/stopping/oracle/mean_psnr"] == pytest.approx(
        np.mean([summary["images"][n]["streams"]["clean"]["peak_psnr"] for n in ("face", "comic")]), rel=1e-12)
    media = list((run_file.parent / "files" / "media" / "images" / "restored").glob("*.png"))
    assert sorted(p.name.split("_")[0] for p in media) == ["comic", "face"]


def test_wandb_that_cannot_start_warns_and_keeps_local_records(cfg_of, tmp_path, monkeypatch):
    import wandb

    def broken(**kwargs):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(UserWarning, match="W&B could not start.*no W&B today"):
        summary = run_cell(cfg_of(), tmp_path)
    assert summary["run"]["status"] == "complete"
    assert read_summary(tmp_path / "summary.json")["images"]["comic"]["status"] == "complete"


class FakeRun:
    def __init__(self, fail_log=False):
        self.fail_log, self.logged, self.finished = fail_log, 0, False
        self.summary = {}

    def define_metric(self, *a, **k):
        pass

    def log(self, data):
        if self.fail_log:
            raise OSError("disk full")
        self.logged += 1

    def finish(self, **k):
        self.finished = True

    id = "fake"

    def log_artifact(self, artifact):
        self.artifact = artifact


@pytest.mark.parametrize("env, overrides, expected", [
    (None, (), "offline"),  # nothing set: conf/logger/wandb.yaml's default
    (None, ("logger.mode=online",), "online"),  # the config's mode reaches wandb.init
    ("online", (), "online"),  # WANDB_MODE overrides the config
    ("disabled", ("logger.mode=online",), "disabled"),
], ids=["default", "config-online", "env-online", "env-over-config"])
def test_the_mode_is_offline_by_default_else_as_configured(cfg_of, tmp_path, monkeypatch, env, overrides, expected):
    """What the logger passes to wandb.init (no network: init is replaced by a recorder)."""
    import os

    import wandb

    seen = {}

    def fake_init(**kwargs):
        seen.update(kwargs, env_mode=os.environ.get("WANDB_MODE"))
        return FakeRun()

    monkeypatch.setattr(wandb, "init", fake_init)
    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)  # restored after the test, also if the logger sets it
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    run_cell(cfg_of(*overrides, "kernel=radial", "noise.var=2", "loss=ls_tv", "data.images=[face]"), tmp_path)
    assert seen["mode"] == expected
    # offline also through the environment (ENVIRONMENT.md: else wandb calls an analytics
    # host at exit); any other mode leaves the environment as it was
    assert seen["env_mode"] == ("offline" if expected == "offline" else env)
    assert (seen["group"], seen["name"]) == ("radial-2", "ls_tv")


def test_wandb_failing_mid_run_does_not_stop_the_job(cfg_of, tmp_path, monkeypatch):
    import wandb

    fake = FakeRun(fail_log=True)
    monkeypatch.setattr(wandb, "init", lambda **k: fake)
    with pytest.warns(UserWarning, match="W&B logging failed.*disk full"):
        summary = run_cell(cfg_of(), tmp_path)
    assert summary["run"]["status"] == "complete" and fake.finished


def finished_records(run_file: Path) -> list:
    """The records of an offline run file once W&B's service has written its exit record."""
    deadline = time.monotonic() + 60
    records = wandb_records(run_file)
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        assert time.monotonic() < deadline, "the W&B log never got its exit record"
        time.sleep(0.2)
        records = wandb_records(run_file)
    return records


class StagedArtifact:
    """An artifact as wandb.Api returns it, downloading the files the offline run staged."""

    def __init__(self, record):
        self.type, self.contents = record.type, list(record.manifest.contents)

    def download(self, root):
        import shutil

        for c in self.contents:
            target = Path(root) / c.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(c.local_path, target)
        return root


class ApiRun:
    def __init__(self, artifact, run_id):
        self.path, self.artifact = ["me", "bpdip", run_id], artifact

    def logged_artifacts(self):
        return [self.artifact]


def test_a_report_from_wandb_equals_the_local_one(cfg_of, tmp_path):
    """The job directory goes to W&B as an artifact (offline: staged, listed in the run file)
    and the report's W&B source reads it back as a local job: the same tables, git commit
    and device (issue 28)."""
    from bpdip.records import WANDB_ARTIFACT_TYPE
    from bpdip.report import build_report, load_local, write_report
    from bpdip.report.wandb_source import load_wandb

    job = tmp_path / "job"
    run_cell(cfg_of(), job)
    [run_file] = list((job / "wandb").glob("offline-run-*/run-*.wandb"))
    [art] = [r.artifact for r in finished_records(run_file) if r.WhichOneof("record_type") == "artifact"]
    assert art.type == WANDB_ARTIFACT_TYPE
    paths = {c.path for c in art.manifest.contents}
    assert {"summary.json", "metrics.csv", "config.yaml", "restored/face.png", "images/face/y.npy",
            "images/comic/truth.png", "images/face/average.oracle.png"} <= paths
    assert not any(p.startswith(("wandb/", "checkpoints/")) for p in paths)

    class Api:
        def runs(self, project, filters=None):
            assert project == "me/bpdip"
            return [ApiRun(StagedArtifact(art), art.run_id)]

    remote = load_wandb("me/bpdip", api=Api(), root=tmp_path / "dl")
    local = load_local([str(job)])
    assert remote[0].run["git_commit"] == local[0].run["git_commit"] and remote[0].run["device"]
    outs = {}
    for name, jobs in (("local", local), ("wandb", remote)):
        outs[name] = tmp_path / name
        write_report(build_report(jobs), outs[name], figure=False)
    csvs = sorted(p.name for p in outs["local"].glob("*.csv"))
    assert "table1_streams.csv" in csvs and "stopping.csv" in csvs
    assert sorted(p.name for p in outs["wandb"].glob("*.csv")) == csvs
    for name in csvs:  # the same numbers; only the records' directories (``source``) differ
        a, b = (pd.read_csv(outs[k] / name).drop(columns=["source", "sources"], errors="ignore") for k in outs)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    header = [ln for ln in (outs["local"] / "report.md").read_text().splitlines() if "record git commits" in ln]
    assert header and header[0] in (outs["wandb"] / "report.md").read_text()


def test_a_wandb_run_without_its_records_is_listed_unreadable(tmp_path):
    """A run without the records artifact (older bpdip, or a job that never finished) is one
    unreadable record with a one-line reason; the report still builds and lists it."""
    from bpdip.report import build_report, write_report
    from bpdip.report.wandb_source import NO_RECORDS, load_wandb

    class OtherArtifact:
        type = "run_table"

        def download(self, root):
            raise AssertionError("only the records artifact is downloaded")

    class Api:
        def runs(self, project, filters=None):
            self.asked = (project, filters)
            return [ApiRun(OtherArtifact(), "old")]

    api = Api()
    [job] = load_wandb("me/bpdip", filters={"group": "uniform-0.3"}, api=api, root=tmp_path / "dl")
    assert api.asked == ("me/bpdip", {"group": "uniform-0.3"})
    assert job.error == NO_RECORDS and "\n" not in NO_RECORDS and "bpdip-records" in NO_RECORDS
    assert job.source == "wandb:me/bpdip/old" and job.cell is None
    write_report(build_report([job]), tmp_path / "out", figure=False)
    assert f"record unreadable: {NO_RECORDS} (wandb:me/bpdip/old)" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(ValueError, match="ENTITY/PROJECT"):
        load_wandb("bpdip", api=api)
