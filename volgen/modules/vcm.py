"""VCM, the Volumetric Conditioning Module: an asymmetric U-Net that modulates a frozen backbone's prediction.

1. The conditions reach the backbone's grid one of two ways (`condition_path`):
   - "codec": through the backbone's own codec, each condition encoded like the image (the 8 Haar subbands for
     the wavelet backbone: lossless, nothing to learn);
   - "encoder": a learned encoder of stride-2 convolutions (one per factor of 2 of the codec).
2. A small time-conditioned U-Net on that grid takes (x_t, the frozen prediction, the conditions) and the
   backbone's class label (which contrast), and ends in zero-initialised 1x1x1 heads gamma and beta.
3. prediction' = prediction (1 + scale gamma) + scale beta, on the backbone's own parameterization.
4. With a `prior`, the module also computes an estimate that learns nothing or only a per-voxel map, and a
   zero-initialised gate g: `regression` (synthesis) a per-voxel regression (linear, or quadratic with
   `prior_degree: 2`) from the present contrasts to the target, fitted on the training cases before training
   (`table`: the per-voxel conditional mean instead, volgen/modules/table_prior.py);
   `interpolation` (super-resolution) the thick slices interpolated by cubic splines; `fill` (inpainting) the
   harmonic fill of the mask from its boundary (both exactly the baselines bench_quality scores); `template_fill`
   (inpainting) the training cases' mean healthy image, with `prior_components` also their principal components
   combined per case, fitted into the mask (volgen/modules/template_prior.py); `label_table` (lesion insertion) the
   healthy image with each labelled compartment's intensity from a line fitted per contrast and compartment
   (volgen/modules/label_prior.py):
   prediction' += scale g (prior - prediction). The U-Net sees the prior too, so it learns a correction of an
   estimate that is already as good as a simple baseline.
All heads start at zero, so an untrained VCM is the identity (the published VCM starts by perturbing the backbone).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.networks.nets import DiffusionModelUNet

from volgen.config import DictConfig
from volgen.modules.base import Conditioner
from volgen.modules.label_prior import LabelTablePrior
from volgen.modules.prior import FillPrior, InterpolationPrior, RegressionPrior
from volgen.modules.table_prior import TablePrior
from volgen.modules.template_prior import TemplateFillPrior



def _labelled(kind: str, classes: int | None) -> int:
    if not classes:
        raise ValueError(f"prior: {kind} needs a backbone with contrast labels (the target)")
    return classes


# prior kind -> its builder from (config, number of conditions, the backbone's contrast classes); a task's spec
# (volgen/taskspec.py) names the kinds that fit it
PRIORS = {
    "none": lambda config, n, classes: None,
    "regression": lambda config, n, classes: RegressionPrior(n, _labelled("regression", classes),
                                                             config.prior_degree),
    "table": lambda config, n, classes: TablePrior(n, _labelled("table", classes)),
    "interpolation": lambda config, n, classes: InterpolationPrior(config.prior_factor, config.prior_axis),
    "fill": lambda config, n, classes: FillPrior(),
    "template_fill": lambda config, n, classes: TemplateFillPrior(max(classes or 0, 1), config.prior_components,
                                                                  registered=config.prior_registered,
                                                                  fine_detail=config.prior_fine_detail),
    "label_table": lambda config, n, classes: LabelTablePrior(_labelled("label_table", classes)),
}

# The gate's bias is stored divided by this gain: Adam moves a parameter by about lr per step whatever its
# gradient's size, so the gate reaches 1 in tens of steps instead of 1/lr. It is a table over noise levels
# (`gate_buckets` equal bins of the training timesteps): at high noise the prior is the best estimate there is, near
# the data x_t itself is better, and one shared bias settles at a compromise that pulls every sample to the prior.
GATE_GAIN = 32.0


@dataclass
class VCMConfig(DictConfig):
    conditions: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")
    encoder_channels: tuple[int, ...] = (16, 32)     # widths of the condition encoder, first to last
    features: int = 16                               # encoded-condition channels handed to the U-Net
    channels: tuple[int, ...] = (32, 64)             # the small U-Net
    attention_levels: tuple[bool, ...] = (False, False)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    norm_num_groups: int = 8
    head_channels: int = 32                          # U-Net output features the gamma/beta heads read
    condition_path: str = "encoder"                  # encoder (learned, strided) | codec (the backbone's codec)
    mid_attention: bool = True                       # MONAI's mid-block attention over the whole lowest grid
    prior: str = "none"  # none | regression | table (synthesis) | interpolation (SR) | fill | template_fill | label_table
    prior_degree: int = 1                            # regression: 1 linear; 2 with the products of pairs
    prior_factor: int = 4                            # interpolation: thick-slice factor and model-grid axis
    prior_axis: int = 2
    prior_components: int = 0                        # template_fill: principal components fitted per case (0: mean)
    prior_registered: bool = False                   # template_fill: a sharp atlas registered to each case instead
                                                     # of the components (volgen/modules/registration.py)
    prior_fine_detail: bool = False                  # and that atlas's 1 mm detail (volgen/modules/fine_atlas.py,
                                                     # fitted by scripts/fit_fine_atlas.py after training)
    gate_buckets: int = 1                            # the gate's bias: one per bin of timesteps

    def __post_init__(self):
        self.conditions, self.encoder_channels = tuple(self.conditions), tuple(self.encoder_channels)
        self.channels = tuple(self.channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if self.condition_path not in ("encoder", "codec"):
            raise ValueError(f"condition_path: '{self.condition_path}' is not encoder or codec")
        if self.prior not in PRIORS:
            raise ValueError(f"prior: '{self.prior}' is not one of {', '.join(PRIORS)}")
        if self.prior_registered and self.prior_components:
            raise ValueError("prior_registered replaces prior_components: set prior_components to 0")
        if self.prior_fine_detail and not self.prior_registered:
            raise ValueError("prior_fine_detail is the registered atlas's: set prior_registered too")


def _conv(cin: int, cout: int, stride: int = 1) -> torch.nn.Module:
    return torch.nn.Conv3d(cin, cout, 3, stride=stride, padding=1)


class ConditionEncoder(torch.nn.Module):
    """Image-resolution conditions -> features on the backbone's grid (downsampling by `factor`, a power of 2)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int, factor: int):
        super().__init__()
        steps = int(round(math.log2(factor)))
        if 2 ** steps != factor:
            raise ValueError(f"the codec's downsampling {factor} is not a power of 2")
        widths = list(widths) + [widths[-1]] * max(0, steps + 1 - len(widths))
        layers = [_conv(in_channels, widths[0]), torch.nn.SiLU()]
        for i in range(steps):
            layers += [_conv(widths[i], widths[i + 1], stride=2), torch.nn.SiLU()]
        layers += [torch.nn.Conv3d(widths[steps], out_channels, 1)]
        self.layers = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class VCM(Conditioner):
    model_type = "vcm"
    config_class = VCMConfig

    def __init__(self, backbone, config: VCMConfig | None = None):
        super().__init__(backbone, config)
        config = self.config
        latent = backbone.network.config.out_channels
        net = backbone.network.config
        n = len(config.conditions)
        if config.condition_path == "codec":
            self.encoder = None
            features = n * latent + n                    # each condition's codes, and the present flags
        else:
            self.encoder = ConditionEncoder(2 * n, config.encoder_channels, config.features,
                                            backbone.codec.downsampling)
            features = config.features
        self.prior = PRIORS[config.prior](config, n, net.num_class_embeds)
        if self.prior is not None:
            features += latent
        self.unet = DiffusionModelUNet(
            spatial_dims=3, in_channels=net.in_channels + latent + features, out_channels=config.head_channels,
            num_res_blocks=config.num_res_blocks, channels=config.channels, attention_levels=config.attention_levels,
            norm_num_groups=config.norm_num_groups, num_head_channels=config.num_head_channels,
            num_class_embeds=net.num_class_embeds, use_flash_attention=True)
        if not config.mid_attention:
            # Full attention over the lowest grid of a whole volume (16k tokens at 2 mm) costs 90% of a training
            # step on a CPU; the conditions are local, so a module without it is nearly free to evaluate.
            self.unet.middle_block.attention = torch.nn.Identity()
        # MONAI zero-initialises the U-Net's output convolution. Behind zero heads that would be a dead end (the
        # heads' weight gradients are h * g = 0 and the output conv's are W_head^T g = 0), so give it PyTorch's
        # default initialisation: only the heads start at zero.
        self.unet.out[2].conv.reset_parameters()
        self.gamma = torch.nn.Conv3d(config.head_channels, latent, 1)
        self.beta = torch.nn.Conv3d(config.head_channels, latent, 1)
        heads = [self.gamma, self.beta]
        if self.prior is not None:
            self.gate = torch.nn.Conv3d(config.head_channels, latent, 1)
            self.gate_bias = torch.nn.Parameter(torch.zeros(config.gate_buckets, latent))
            heads.append(self.gate)
        for head in heads:
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)

    def _bucket(self, t: torch.Tensor) -> torch.Tensor:
        """The gate-bias row of each item's timestep (B,)."""
        n = self.gate_bias.shape[0]
        steps = self.backbone.denoiser.schedule.num_train_timesteps
        t = torch.as_tensor(t, device=self.gate_bias.device).reshape(-1)
        return (t.float() * n / steps).long().clamp(0, n - 1)

    def prepare(self, cases) -> None:
        """Data-dependent set-up before training: fit the prior on the training cases (a prior that needs more of
        them than their images, such as the inpainting template's healthy twins, takes the cases themselves). It
        refits a prior copied by init_from: the prior belongs to this run's data and intensity scale."""
        if self.prior is not None:
            if hasattr(self.prior, "fit_cases"):
                self.prior.fit_cases(cases)
            else:
                self.prior.fit([case.images for case in cases])

    def condition_features(self, conditions: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        if self.encoder is not None:
            return self.encoder(self.condition_input(conditions, present))
        b, n = conditions.shape[:2]
        if present is None:
            present = torch.ones(b, n, device=conditions.device, dtype=conditions.dtype)
        flags = present.to(conditions.dtype).view(b, n, 1, 1, 1)
        codes = self.backbone.codec.encode(conditions.reshape(b * n, 1, *conditions.shape[2:]))
        codes = codes.reshape(b, n, -1, *codes.shape[2:]) * flags[..., None]
        return torch.cat([codes.flatten(1, 2), flags.expand(b, n, *codes.shape[3:])], dim=1)

    def constant_features(self, conditions: torch.Tensor, present, labels, prior_options=None) -> list:
        """The conditions' codes (and the prior's) on the backbone's grid. They depend on neither x_t nor t: a
        sampling call computes them once (`tasks.generate`) and hands them to every step as `features`.
        `prior_options` are the prior's per-call settings (super-resolution: this volume's factor and axis)."""
        features = [self.condition_features(conditions, present)]
        if self.prior is not None:
            if present is None:
                present = torch.ones(conditions.shape[:2], device=conditions.device, dtype=conditions.dtype)
            features.append(self.backbone.codec.encode(self.prior(conditions, present, labels,
                                                                  **(prior_options or {}))))
        return features

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditions: torch.Tensor | None = None,
                present: torch.Tensor | None = None, scale: float | None = None, features: list | None = None,
                prior_options: dict | None = None, **backbone_cond) -> torch.Tensor:
        """`scale` is this call's conditioning strength (default the module's); `features`, the conditions'
        `constant_features` when a sampling call computed them once (else they are computed here)."""
        scale = self.strength(scale)
        with torch.no_grad():
            prediction = self.backbone.network(x_t, t, **backbone_cond)
        if conditions is None or scale == 0:
            return prediction
        labels = backbone_cond.get("class_labels")
        if features is None:
            features = self.constant_features(conditions.to(x_t.dtype), present, labels, prior_options)
        out, gate, difference = self.gated_parts(x_t, t, prediction, features, scale, labels)
        if gate is not None:
            gate = gate + GATE_GAIN * self.gate_bias[self._bucket(t)][..., None, None, None]
            out = out + scale * gate * difference
        return out

    def gated_parts(self, x_t, t, prediction, features, scale: float, labels):
        """The output split as out = base + scale * (gate + GATE_GAIN * bias) * difference: (base, the gate's
        per-voxel part, prior - prediction); the last two None without a prior. forward adds the bias row of the
        timestep; volgen/training/gate_refit.py fits the rows."""
        h = self.unet(torch.cat([x_t, prediction, *features], dim=1), t, class_labels=labels)
        base = prediction * (1 + scale * self.gamma(h)) + scale * self.beta(h)
        if self.prior is None:
            return base, None, None
        return base, self.gate(h), features[-1] - prediction
