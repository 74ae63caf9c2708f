import jax, jax.numpy as jnp, numpy as np, time
from tests.test_train_step import CFG, packed_batch, make_trainer
from clarify_jax.model.transformer import init_params
from clarify_jax.train.step import loss_weights
cfg = CFG.replace(num_layers=3, lora_rank=4, lora_alpha=8.0, remat="dots_no_batch")
params = init_params(cfg, jax.random.key(0))
batch = {k: jnp.asarray(v) for k, v in packed_batch(0).items()}
def scans(jaxpr, out):
    for e in jaxpr.eqns:
        if e.primitive.name == "scan":
            out.append(e.params["length"])
        for sub in jax.core.jaxprs_in_params(e.params) if hasattr(jax.core,'jaxprs_in_params') else []:
            scans(sub, out)
    return out
for frozen in (0, 2):
    tr = make_trainer(cfg.replace(frozen_layers=frozen))
    trainable, fz = tr.split(params)
    jp = jax.make_jaxpr(jax.grad(lambda t: tr.loss(t, fz, batch, loss_weights(1.0, 0.5))[0]))(trainable)
    print(frozen, [ (e.primitive.name, e.params.get("length")) for e in jp.jaxpr.eqns if e.primitive.name in ("scan","while")])
