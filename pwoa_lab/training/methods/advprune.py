"""advprune: adversarial pruning (Ye et al. 2019), cross-entropy on PGD examples (mix ratio 1 by default)."""
from pwoa_lab.training.methods.admm import LOSS_FIELDS, PruneConfig
from pwoa_lab.training.methods.naive import ce_loss
from pwoa_lab.training.registry import MethodSpec, register

register(MethodSpec("advprune", PruneConfig, loss=ce_loss, mix_ratio=1.0, ignores=LOSS_FIELDS, order=50, cost=3,
                    label="AdvPrune", color="tab:green", marker="^", help="CE on PGD examples (Ye et al. 2019)"),
         replace=True)
