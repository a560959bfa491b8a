"""The trainer: overfitting one batch, a full epoch's outputs, exact resume, bad data, fine-tuning, distillation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.errors import CheckpointError, ConfigError
from yolov6_sdk.labels import load_coco
from yolov6_sdk.models import build_model
from yolov6_sdk.training.datagen import generate_dataset
from yolov6_sdk.training.datasets import TrainDataset, collate
from yolov6_sdk.training.distill import load_teacher, teacher_targets
from yolov6_sdk.training.losses import distill_decay
from yolov6_sdk.training.plots import read_results_csv
from yolov6_sdk.training.recipe import build_loss, build_optimizer, load_pretrained, lr_factor
from yolov6_sdk.training.trainer import TrainConfig, Trainer
from yolov6_sdk.weights import load, save_checkpoint

NAMES = ["circle", "square", "triangle"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("shapes"), 8, 2, imgsz=(96, 128), seed=1, num_classes=3)


def _config(data: Path, out: Path, **changes: object) -> TrainConfig:
    """A short CPU run: 128 px, batch 4 (2 iterations per epoch), no long warm-up."""
    values = dict(
        model="yolov6n", data=str(data), epochs=1, batch=4, imgsz=128, workers=0, device="cpu", out=str(out),
        min_warmup_iters=0, warmup_epochs=1.0, eval_interval=1, ema_tau=5.0,
    )  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def test_tiny_model_overfits_one_batch_loss_falls_80_percent(shapes: Path) -> None:
    dataset = TrainDataset(load_coco(shapes, "train"), 128, augment=None)
    images, targets, _ = collate([dataset[0], dataset[1]])
    images = images.float() / 255.0
    torch.manual_seed(0)
    model = build_model("yolov6n", num_classes=3).train()
    loss_fn = build_loss(model)
    optimizer = build_optimizer(model, lr=0.02, momentum=0.9, weight_decay=0.0)
    losses = []
    for _ in range(80):
        out = model(images)
        loss, _ = loss_fn(out.cls_scores, out.reg_dist, out.feature_sizes, targets, 0, reg_lrtb=out.reg_lrtb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] <= 0.2 * losses[0]:
            break
    assert losses[-1] <= 0.2 * losses[0], f"loss went from {losses[0]:.3f} to {losses[-1]:.3f} in 80 steps"


def test_one_epoch_through_the_cli_writes_checkpoints_results_and_chart(shapes: Path, tmp_path: Path) -> None:
    from yolov6_sdk.cli.train import main

    out = tmp_path / "run"
    argv = ["--model", "yolov6n", "--data", str(shapes), "--epochs", "1", "--batch", "4", "--imgsz", "128",
            "--workers", "0", "--device", "cpu", "--out", str(out), "--min-warmup-iters", "0"]  # fmt: skip
    assert main(argv) == 0
    for name in ("last.pt", "best.pt", "resume.pt", "results.csv", "results.png"):
        assert (out / name).is_file(), name
    loaded = load(out / "best.pt")
    assert loaded.names == tuple(NAMES) and loaded.imgsz == 128
    assert loaded.meta["epoch"] == 1 and loaded.meta["train_config"]["batch"] == 4
    rows = read_results_csv(out / "results.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert list(rows[0])[:4] == ["epoch", "class_loss", "iou_loss", "dfl_loss"]
    assert rows[0]["mAP50-95"] != "" and float(rows[0]["class_loss"]) > 0
    assert cv2.imread(str(out / "results.png")) is not None
    assert main(argv) == 2  # the folder already holds a run: refuse to overwrite it


def test_resume_continues_at_epoch_2_and_matches_an_uninterrupted_run(shapes: Path, tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop_after_first(epoch: int, row: dict) -> None:
        raise Stop

    with pytest.raises(Stop):
        Trainer(_config(shapes, tmp_path / "cut", epochs=2), on_epoch_end=stop_after_first).fit()
    first_row = read_results_csv(tmp_path / "cut" / "results.csv")
    assert [r["epoch"] for r in first_row] == ["1"]

    epochs_run = []
    resumed = Trainer.resume(tmp_path / "cut" / "last.pt", on_epoch_end=lambda e, row: epochs_run.append(e))
    assert resumed.fit()["epochs"] == 2
    assert epochs_run == [2]  # epoch 1 is not redone
    rows = read_results_csv(tmp_path / "cut" / "results.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0] == first_row[0]

    whole = Trainer(_config(shapes, tmp_path / "whole", epochs=2))
    whole.fit()
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert load(tmp_path / "cut" / "last.pt").meta["epoch"] == 2


def test_resume_without_a_state_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="resume.pt"):
        Trainer.resume(tmp_path / "last.pt")


def test_resume_with_another_model_or_changed_data_is_one_clear_error(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", 4, 1, imgsz=(96, 128), seed=5, num_classes=3)
    Trainer(_config(data, tmp_path / "run", epochs=2, batch=4)).fit()
    (tmp_path / "run" / "results.csv").unlink()  # not needed to resume
    with pytest.raises(ConfigError, match=r"model='yolov6n'.*--weights"):
        Trainer.resume(tmp_path / "run" / "last.pt", model="yolov6s")
    with pytest.raises(ConfigError, match="data="):
        Trainer.resume(tmp_path / "run" / "last.pt", data=str(tmp_path / "other"))
    resumed = Trainer.resume(tmp_path / "run" / "last.pt", model="yolov6n", epochs=3)  # equal values are fine
    assert resumed.config.epochs == 3

    generate_dataset(data, 4, 1, imgsz=(96, 128), seed=6, num_classes=3)  # same folder, other images
    with pytest.raises(CheckpointError, match=r"changed since this run started.*--weights"):
        Trainer.resume(tmp_path / "run" / "last.pt")


def test_resume_through_the_cli_refuses_another_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from yolov6_sdk.cli.train import main

    data = generate_dataset(tmp_path / "data", 4, 1, imgsz=(96, 128), seed=5, num_classes=3)
    Trainer(_config(data, tmp_path / "run", batch=4)).fit()
    assert main(["--resume", str(tmp_path / "run" / "last.pt"), "--model", "yolov6s"]) == 2
    assert "keeps its settings" in capsys.readouterr().err


def test_bad_files_are_reported_and_training_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = generate_dataset(tmp_path / "bad", 6, 2, imgsz=(96, 128), seed=2, num_classes=3)
    (root / "images" / "train" / "000000000002.jpg").write_bytes(b"not a jpeg")
    ann_path = root / "annotations" / "instances_train.json"
    doc = json.loads(ann_path.read_text())
    doc["annotations"][0]["category_id"] = 99
    ann_path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="yolov6_sdk.training"):
        trainer = Trainer(_config(root, tmp_path / "run"))
        assert len(trainer.dataset) == 5
        trainer.fit()
    assert "000000000002.jpg" in caplog.text and "unknown category" in caplog.text
    assert (tmp_path / "run" / "last.pt").is_file()


def test_fine_tuning_with_another_class_count_loads_matching_tensors_only(tmp_path: Path) -> None:
    source = randomize_model(build_model("yolov6n", num_classes=80))
    path = save_checkpoint(tmp_path / "coco.pt", source, imgsz=640)
    model = build_model("yolov6n", num_classes=3)
    report = load_pretrained(model, path)
    assert report["skipped"] and all(k.startswith("detect.cls_preds.") for k in report["skipped"])
    key = "backbone.stem.rbr_dense.bn.running_var"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])
    with pytest.raises(ConfigError, match="--model yolov6n"):
        load_pretrained(build_model("yolov6s", num_classes=3), path)


def test_optimizer_groups_follow_the_official_split() -> None:
    model = build_model("yolov6m", num_classes=3)
    bn, weights, biases = build_optimizer(model, 0.01, 0.937, 5e-4).param_groups
    assert bn["weight_decay"] == 0 and weights["weight_decay"] == 5e-4 and biases["weight_decay"] == 0
    assert bn["nesterov"] and bn["initial_lr"] == 0.01
    alphas = {id(p) for n, p in model.named_parameters() if n.endswith("alpha")}
    grouped = {id(p) for g in (bn, weights, biases) for p in g["params"]}
    assert alphas and not alphas & grouped  # BottleRep alpha is never trained, as officially
    assert lr_factor(0, 10, 0.01) == 1.0 and lr_factor(10, 10, 0.01) == pytest.approx(0.01)


def test_adamw_uses_the_same_groups_and_its_own_default_lr() -> None:
    model = build_model("yolov6n", num_classes=3)
    bn, weights, biases = build_optimizer(model, 0.002, 0.9, 5e-4, kind="adamw").param_groups
    assert bn["betas"] == (0.9, 0.999) and bn["weight_decay"] == 0 and biases["weight_decay"] == 0
    assert weights["weight_decay"] == 5e-4 and weights["initial_lr"] == 0.002
    assert TrainConfig(data="x", optimizer="adamw").base_lr == 0.008
    assert TrainConfig(data="x", optimizer="adamw", lr0=0.001).base_lr == 0.001
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(data="x", optimizer="adam")


def test_train_config_round_trips_and_rejects_bad_values(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path / "out", lr0=0.03)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig(data="x").base_lr == 0.02 and TrainConfig(model="yolov6s", data="x").base_lr == 0.01
    assert TrainConfig(data="x", epochs=8).mosaic_off_epochs == 2
    assert TrainConfig(model="yolov6l", data="x").augment_config.mixup == 0.1
    with pytest.raises(ConfigError, match="multiple of 32"):
        TrainConfig(data="x", imgsz=100)
    with pytest.raises(ConfigError, match="unknown training settings"):
        TrainConfig.from_dict({"data": "x", "lr": 0.1})
    with pytest.raises(ConfigError, match="teacher"):
        TrainConfig(data="x", distill=True)


def test_distillation_terms_are_finite_and_decay_over_epochs(shapes: Path, tmp_path: Path) -> None:
    teacher_path = save_checkpoint(tmp_path / "teacher.pt", randomize_model(build_model("yolov6n", 3), 1), NAMES, 128)
    student = randomize_model(build_model("yolov6n", 3), 2).train()
    teacher = load_teacher(teacher_path, student)
    assert teacher.training and not teacher.backbone.stem.rbr_dense.bn.training  # BN on running statistics
    dataset = TrainDataset(load_coco(shapes, "train"), 128, augment=None)
    images, targets, _ = collate([dataset[0], dataset[1]])
    images = images.float() / 255.0
    kd = teacher_targets(teacher, images, max_epochs=10)
    out = student(images)
    loss_fn = build_loss(student)
    terms = {}
    for epoch in (0, 5, 9):
        _, parts = loss_fn(out.cls_scores, out.reg_dist, out.feature_sizes, targets, epoch, out.reg_lrtb, kd)
        terms[epoch] = parts
    for parts in terms.values():
        assert all(torch.isfinite(v) for v in parts.values())
    assert terms[0]["distill_cls"] > 0 and terms[0]["distill_dfl"] > 0
    for epoch in (5, 9):
        ratio = terms[epoch]["distill_cls"] / terms[0]["distill_cls"]
        assert ratio == pytest.approx(distill_decay(epoch, 10), rel=1e-4)

    trainer = Trainer(_config(shapes, tmp_path / "run", distill=True, teacher=str(teacher_path)))
    trainer.fit()
    row = read_results_csv(tmp_path / "run" / "results.csv")[0]
    assert float(row["distill_cls"]) >= 0 and float(row["distill_dfl"]) >= 0


def test_teacher_with_other_classes_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "t.pt", build_model("yolov6n", num_classes=5), imgsz=128)
    with pytest.raises(ConfigError, match="5 classes"):
        load_teacher(path, build_model("yolov6n", num_classes=3))


def test_cli_options_reach_the_config() -> None:
    from yolov6_sdk.cli.train import _config, _parser

    argv = ["--data", "d", "--optimizer", "adamw", "--scale", "0.2", "--translate", "0.05", "--mosaic", "0"]
    config = _config(_parser().parse_args(argv))
    assert config.optimizer == "adamw" and config.base_lr == 0.008
    augment = config.augment_config
    assert (augment.scale, augment.translate, augment.mosaic, augment.hsv_s) == (0.2, 0.05, 0.0, 0.7)
