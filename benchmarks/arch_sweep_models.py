"""The architecture sweep's models: one small member of each timm family and the input side
it is swept at (data, kept apart from `arch_sweep.py`, which runs them).

`ARCHS` go through the sweep's stages; `SCREENED_ONLY` were built and run in-process but not
yet through the CLI (`python benchmarks/arch_sweep.py --models NAME,... --update`, then move
them into `ARCHS`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    """One family's smallest member and the input side it is swept at."""

    name: str
    family: str
    #: the side, or (H, W) for a non-square sweep (`arch_sweep.py --size 64x96`)
    size: int | tuple[int, int] = 64


#: One small member per family, at 64 px unless the family needs another size (inception_v3's
#: stem needs 75 px and inception_v4's 80: both 96; HaloNet's blocks 244 px: 256; CrossViT's two
#: grids: 120; VGG at 32).
ARCHS: list[Arch] = [
    Arch("resnet18", "resnet"),
    Arch("resnetv2_18", "resnetv2"),
    Arch("resnetv2_50x1_bit", "bit"),
    Arch("efficientnet_b0", "efficientnet"),
    Arch("mobilenetv2_050", "mobilenetv2"),
    Arch("mobilenetv3_small_050", "mobilenetv3"),
    Arch("mobilenetv4_conv_small", "mobilenetv4"),
    Arch("mobilevit_xxs", "mobilevit"),
    Arch("mobilevitv2_050", "mobilevitv2"),
    Arch("convnext_atto", "convnext"),
    Arch("convnextv2_atto", "convnextv2"),
    Arch("regnetx_002", "regnet"),
    Arch("ghostnet_050", "ghostnet"),
    Arch("repvgg_a0", "repvgg"),
    Arch("mobileone_s0", "mobileone"),
    Arch("fastvit_t8", "fastvit"),
    Arch("vit_tiny_patch16_224", "vit"),
    Arch("deit_tiny_patch16_224", "deit"),
    Arch("deit_tiny_distilled_patch16_224", "deit distilled"),
    Arch("swin_tiny_patch4_window7_224", "swin"),
    Arch("levit_128s", "levit"),
    Arch("levit_conv_128s", "levit (conv)"),
    Arch("efficientformer_l1", "efficientformer"),
    Arch("efficientformerv2_s0", "efficientformerv2"),
    Arch("edgenext_xx_small", "edgenext"),
    Arch("tinynet_e", "tinynet"),
    Arch("densenet121", "densenet"),
    Arch("rexnet_100", "rexnet"),
    Arch("hrnet_w18_small", "hrnet"),
    Arch("mixer_s32_224", "mixer"),
    Arch("poolformer_s12", "poolformer"),
    Arch("caformer_s18", "caformer"),
    Arch("tiny_vit_5m_224", "tiny_vit"),
    Arch("inception_v3", "inception", 96),
    Arch("xception41", "xception"),
    Arch("dla34", "dla"),
    Arch("cspresnet50", "cspnet"),
    Arch("vgg11", "vgg", 32),
    # timm 1.0.31's other families (the wider sweep): each one's smallest member
    Arch("crossvit_tiny_240", "crossvit", 120),
    Arch("efficientvit_m0", "efficientvit (msra)"),
    Arch("maxvit_pico_rw_256", "maxvit"),
    Arch("xcit_nano_12_p16_224", "xcit"),
    Arch("efficientvim_m1", "efficientvim"),
    Arch("mambaout_femto", "mambaout"),
    Arch("csatv2", "csatv2"),
    Arch("coatnet_pico_rw_224", "coatnet"),
    Arch("efficientvit_b0", "efficientvit (mit)"),
    Arch("hgnetv2_b0", "hgnetv2"),
    Arch("ghostnetv2_100", "ghostnetv2"),
    Arch("repvit_m1", "repvit"),
    Arch("repghostnet_050", "repghost"),
    Arch("cait_xxs24_224", "cait"),
    Arch("pvt_v2_b0", "pvt_v2"),
    Arch("eva02_tiny_patch14_224", "eva02"),
    Arch("vit_pwee_patch16_reg1_gap_256", "vit (registers)"),
    Arch("gcvit_xxtiny", "gcvit"),
    Arch("coat_lite_tiny", "coat"),
    Arch("botnet26t_256", "botnet"),
    Arch("lambda_resnet26t", "lambda"),
    Arch("fastvit_mci0", "fastvit (mci)"),
    Arch("shvit_s1", "shvit"),
    Arch("pit_ti_224", "pit"),
    Arch("visformer_tiny", "visformer"),
    Arch("nf_regnet_b0", "nfnet"),
    Arch("dpn48b", "dpn"),
    Arch("resnest14d", "resnest"),
    Arch("ese_vovnet19b_slim_dw", "vovnet"),
    Arch("lcnet_050", "lcnet"),
    Arch("mnasnet_small", "mnasnet"),
    Arch("fbnetc_100", "fbnet"),
    Arch("mixnet_s", "mixnet"),
    Arch("nextvit_small", "nextvit"),
    Arch("focalnet_tiny_srf", "focalnet"),
    Arch("twins_svt_small", "twins"),
    Arch("res2next50", "res2net"),
    Arch("selecsls42", "selecsls"),
    Arch("hardcorenas_a", "hardcorenas"),
    Arch("sequencer2d_s", "sequencer2d"),
    Arch("gmlp_ti16_224", "gmlp"),
    Arch("resmlp_12_224", "resmlp"),
    Arch("tnt_s_patch16_224", "tnt"),
    Arch("volo_d1_224", "volo"),
    Arch("gernet_s", "byobnet (gernet)"),
    Arch("skresnet18", "sknet"),
    Arch("legacy_seresnet18", "senet"),
    Arch("regnety_002", "regnety"),
    # screened in-process first, then swept through the CLI (student, export, gray)
    Arch("tresnet_m", "tresnet"),
    Arch("convmixer_768_32", "convmixer"),
    Arch("inception_v4", "inception_v4", 96),
    Arch("halonet26t", "halonet", 256),
    Arch("regnetz_b16", "regnetz"),
    Arch("inception_next_atto", "inception_next"),
    Arch("davit_tiny", "davit"),
    Arch("hiera_tiny_224", "hiera"),
    Arch("starnet_s050", "starnet"),
    Arch("rdnet_tiny", "rdnet"),
    Arch("swinv2_tiny_window8_256", "swinv2"),
    Arch("swinv2_cr_tiny_ns_224", "swinv2 (cr)"),
    Arch("fasternet_t0", "fasternet"),
    Arch("cspnext_tiny", "cspnext"),
    Arch("vit_tiny_r_s16_p8_224", "vit (hybrid)"),
    Arch("vit_srelpos_small_patch16_224", "vit (relpos)"),
]

#: Families screened in-process (built and run at 64 px, 3 and 1 channels) but not yet run
#: through the CLI, waiting for the sweep's time: sweep them with `--models NAME,... --update`,
#: then move them into ARCHS. Empty: the 16 screened so far are all in ARCHS and the table.
SCREENED_ONLY: list[Arch] = []
