"""Methods: what the models see, the mixup rule, and the losses against hand computations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill_cli.data.augment import BatchAugment
from distill_cli.data.loader import Batch
from distill_cli.methods import MethodContext, create_method, kd_loss
from distill_cli.methods.function_matching import FunctionMatchingParams
from distill_cli.methods.supervised import SupervisedParams
from distill_cli.models.create import Net
from distill_cli.models.view import ModelInfo, resize
from distill_cli.recipe.sections import AugmentSpec


class Recorder(nn.Module):
    """Returns fixed-size logits and remembers its last input."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.head = nn.Linear(1, classes)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return self.head(x.mean(dim=(1, 2, 3))[:, None])


def _batch(images: torch.Tensor, labels: torch.Tensor | None = None) -> Batch:
    return Batch(images, labels, torch.arange(images.shape[0]))


def _net(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Net:
    info = ModelInfo("rec", 5, len(mean), (size, size), mean, std, 1.0)
    return Net(Recorder(), info)


def _unnormalize(x: torch.Tensor, info: ModelInfo) -> torch.Tensor:
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return x * std + mean


def _fm(student: Net, teacher: Net, spec: AugmentSpec | None = None, **params):
    size = max(student.info.input_size, teacher.info.input_size)
    augment = BatchAugment(size, **(spec or AugmentSpec()).model_dump())
    ctx = MethodContext(student, teacher, augment)
    return create_method(FunctionMatchingParams(**params), ctx)


def test_teacher_and_student_get_pixel_identical_mixed_views() -> None:
    torch.manual_seed(0)
    student = _net(16, (0.1, 0.2, 0.3), (0.5, 0.6, 0.7))
    teacher = _net(16, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    method = _fm(student, teacher)
    images = torch.randint(0, 256, (6, 1, 20, 20), dtype=torch.uint8)
    method.step(_batch(images), 0)
    s_px = _unnormalize(student.module.seen, student.info)
    t_px = _unnormalize(teacher.module.seen, teacher.info)
    assert not torch.equal(student.module.seen, teacher.module.seen)  # own normalization
    torch.testing.assert_close(s_px, t_px, atol=1e-5, rtol=0)


def test_models_of_different_sizes_see_the_same_view_resized() -> None:
    torch.manual_seed(1)
    student = _net(12, (0.5,) * 3, (0.5,) * 3)
    teacher = _net(24, (0.4,) * 3, (0.3,) * 3)
    method = _fm(student, teacher)
    method.step(_batch(torch.randint(0, 256, (4, 3, 30, 30), dtype=torch.uint8)), 0)
    t_px = _unnormalize(teacher.module.seen, teacher.info)
    s_px = _unnormalize(student.module.seen, student.info)
    assert t_px.shape[-1] == 24 and s_px.shape[-1] == 12
    torch.testing.assert_close(s_px, resize(t_px, (12, 12)), atol=1e-5, rtol=0)


def test_one_mixup_coefficient_per_batch_with_the_rolled_partner() -> None:
    torch.manual_seed(2)
    student, teacher = _net(8, (0.0,), (1.0,)), _net(8, (0.0,), (1.0,))
    # full-image crops, no flip: the view is the image itself, so only mixup changes pixels
    spec = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False)
    method = _fm(student, teacher, spec)
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    out = method.step(_batch(images), 0)
    lam = out.logs["mix"]
    assert lam.numel() == 1 and 0 <= float(lam) <= 1
    x = images.float() / 255
    torch.testing.assert_close(
        teacher.module.seen, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-5, rtol=0
    )
    # coefficients over many batches look like U[0, 1]
    lams = torch.stack([method.step(_batch(images), 0).logs["mix"] for _ in range(400)])
    assert 0.4 < lams.mean() < 0.6 and lams.min() < 0.05 and lams.max() > 0.95


def test_mixup_off_gives_consistent_teaching() -> None:
    torch.manual_seed(3)
    student, teacher = _net(8, (0.0,), (1.0,)), _net(8, (0.0,), (1.0,))
    spec = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False)
    method = _fm(student, teacher, spec, mixup=False)
    images = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    method.step(_batch(images), 0)
    torch.testing.assert_close(teacher.module.seen, images.float() / 255, atol=1e-5, rtol=0)


def test_function_matching_loss_is_the_kd_loss_of_the_two_models() -> None:
    torch.manual_seed(4)
    student, teacher = _net(8, (0.5,), (0.5,)), _net(8, (0.5,), (0.5,))
    method = _fm(student, teacher, temperature=3.0)
    out = method.step(_batch(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)), 0)
    s_logits = student.module.head(student.module.seen.mean(dim=(1, 2, 3))[:, None])
    t_logits = teacher.module.head(teacher.module.seen.mean(dim=(1, 2, 3))[:, None])
    torch.testing.assert_close(out.loss, kd_loss(s_logits, t_logits, 3.0))
    assert out.loss.requires_grad
    assert all(p.grad is None and not p.requires_grad for p in teacher.module.parameters())
    assert not teacher.module.training


def test_kd_loss_matches_a_hand_computation() -> None:
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    temp = 2.0
    total = 0.0
    for i in range(2):
        p_t = [torch.exp(t[i, j] / temp) for j in range(3)]
        p_s = [torch.exp(s[i, j] / temp) for j in range(3)]
        zt, zs = sum(p_t), sum(p_s)
        total += sum((p_t[j] / zt) * torch.log((p_t[j] / zt) / (p_s[j] / zs)) for j in range(3))
    expected = temp**2 * total / 2
    torch.testing.assert_close(kd_loss(s, t, temp), expected)
    # forward KL: swapping the roles changes the value
    assert not torch.isclose(kd_loss(t, s, temp), kd_loss(s, t, temp))
    # temperature scaling: at T=1 there is no T^2 factor
    torch.testing.assert_close(
        kd_loss(s, t, 1.0),
        F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean"),
    )
    assert kd_loss(t, t, 5.0).abs() < 1e-6


def test_supervised_loss_is_cross_entropy_with_smoothing() -> None:
    torch.manual_seed(5)
    student = _net(8, (0.0,), (1.0,))
    spec = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False)
    ctx = MethodContext(student, None, BatchAugment((8, 8), **spec.model_dump()))
    method = create_method(SupervisedParams(label_smoothing=0.1), ctx)
    labels = torch.tensor([0, 3, 1, 4])
    out = method.step(_batch(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8), labels), 0)
    logits = student.module.head(student.module.seen.mean(dim=(1, 2, 3))[:, None])
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, labels, label_smoothing=0.1))
