"""Trains the InfoGAN paper's networks in PyTorch, as an anchor for infogan's results, and writes the generator
(and discriminator) as an infogan checkpoint, so that `infogan score` and `infogan eval` rate both the same way.

The networks and the training step are those of ../shared/reference/torch_step.py (the paper's appendix C networks,
D's update with the information loss reaching the shared trunk, then G's update with D frozen); the settings are the
DCGAN family's standard ones (Radford et al., 2016): Adam with learning rate 2e-4 and beta1 0.5 for both networks,
weights from N(0, 0.02) and batch-norm scales from N(1, 0.02), batch 64, no augmentation. The information loss is
infogan's: 0.5 cross-entropy of the categorical code plus 0.1 times the Gaussian NLL (std 1) of the continuous codes.

  python tools/torch_train.py --dataset cifar10 --steps 4977 --seed 1 --out runs/torch-cifar10/checkpoint.safetensors
  infogan score --checkpoint runs/torch-cifar10/checkpoint.safetensors

Setup: python3 -m venv .venv && .venv/bin/pip install torch numpy safetensors. Data: the official files in
data/<dataset>/ (`make data DATASET=cifar10`).
"""
import argparse, gzip, json, os, struct, time

import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import save_file

CAT, CONT = 10, 2


def mnist_nets(zdim):
    g = nn.Sequential(nn.Linear(zdim, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
                      nn.Linear(1024, 7 * 7 * 128), nn.BatchNorm1d(7 * 7 * 128), nn.ReLU(),
                      nn.Unflatten(1, (128, 7, 7)),
                      nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                      nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh())
    trunk = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.1),
                          nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.1), nn.Flatten(),
                          nn.Linear(7 * 7 * 128, 1024), nn.BatchNorm1d(1024), nn.LeakyReLU(0.1))
    # infogan's layer names for the modules with tensors, by index.
    g_names = {0: 'fc1', 1: 'bn1', 3: 'fc2', 4: 'bn2', 7: 'deconv1', 8: 'bn3', 10: 'deconv2'}
    t_names = {0: 'conv1', 2: 'conv2', 3: 'bn2', 6: 'fc', 7: 'bn3'}
    return g, trunk, 1024, g_names, t_names


def cifar_nets(zdim):
    g = nn.Sequential(nn.Linear(zdim, 2 * 2 * 448), nn.BatchNorm1d(2 * 2 * 448), nn.ReLU(),
                      nn.Unflatten(1, (448, 2, 2)),
                      nn.ConvTranspose2d(448, 256, 4, 2, 1), nn.BatchNorm2d(256), nn.ReLU(),
                      nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.ReLU(),
                      nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
                      nn.ConvTranspose2d(64, 3, 4, 2, 1), nn.Tanh())
    trunk = nn.Sequential(nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.1),
                          nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.1),
                          nn.Conv2d(128, 256, 4, 2, 1), nn.BatchNorm2d(256), nn.LeakyReLU(0.1), nn.Flatten())
    g_names = {0: 'fc', 1: 'bn0', 4: 'deconv1', 5: 'bn1', 7: 'deconv2', 9: 'deconv3', 11: 'deconv4'}
    t_names = {0: 'conv1', 2: 'conv2', 3: 'bn2', 5: 'conv3', 6: 'bn3'}
    return g, trunk, 4 * 4 * 256, g_names, t_names


class D(nn.Module):
    def __init__(s, trunk, width):
        super().__init__()
        s.trunk, s.d = trunk, nn.Linear(width, 1)
        s.q = nn.Sequential(nn.Linear(width, 128), nn.BatchNorm1d(128), nn.LeakyReLU(0.1), nn.Linear(128, CAT + 2 * CONT))

    def forward(s, x):
        h = s.trunk(x)
        return s.d(h).squeeze(1), s.q(h)


def dcgan_init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02); nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02); nn.init.zeros_(m.bias)


def load_images(dataset, data_dir):
    """The training images as uint8 [N, C, H, W], from the official files."""
    if dataset == 'cifar10':
        records = []
        for i in range(1, 6):
            raw = np.fromfile(os.path.join(data_dir, f'data_batch_{i}.bin'), np.uint8).reshape(-1, 3073)
            records.append(raw[:, 1:].reshape(-1, 3, 32, 32))
        return np.concatenate(records)
    path = os.path.join(data_dir, 'train-images-idx3-ubyte.gz')
    raw = gzip.open(path).read() if os.path.exists(path) else open(path[:-3], 'rb').read()
    n, rows, cols = struct.unpack('>III', raw[4:16])
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, rows, cols)


def latent(n, noise, model, g):
    z = torch.rand(n, noise, generator=g) * 2 - 1
    c = torch.randint(0, CAT, (n,), generator=g)
    u = torch.rand(n, CONT, generator=g) * 2 - 1
    return torch.cat([z, F.one_hot(c, CAT).float(), u], 1), c, u


def info_loss(q, c, u):
    return 0.5 * F.cross_entropy(q[:, :CAT], c) + 0.1 * (0.5 * (u - q[:, CAT:CAT + CONT]) ** 2).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dataset', default='cifar10', choices=['mnist', 'fashion-mnist', 'cifar10'])
    ap.add_argument('--data-dir', default=None)
    ap.add_argument('--model', default='infogan', choices=['infogan', 'gan'])
    ap.add_argument('--steps', type=int, default=4977)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed); g = torch.Generator().manual_seed(a.seed)
    data_dir = a.data_dir or os.path.join('data', a.dataset)
    images = torch.from_numpy(load_images(a.dataset, data_dir).astype(np.float32) / 127.5 - 1.0)
    noise = 100 if a.dataset == 'cifar10' else 62
    gnet, trunk, width, g_names, t_names = (cifar_nets if a.dataset == 'cifar10' else mnist_nets)(noise + CAT + CONT)
    Dn = D(trunk, width)
    gnet.apply(dcgan_init); Dn.apply(dcgan_init)
    oD = torch.optim.Adam(Dn.parameters(), 2e-4, betas=(0.5, 0.999))
    oG = torch.optim.Adam(gnet.parameters(), 2e-4, betas=(0.5, 0.999))
    info = a.model == 'infogan'
    batch, per_epoch = 64, len(images) // 64
    started, step = time.time(), 0
    while step < a.steps:
        order = torch.randperm(len(images), generator=g)
        for b in range(per_epoch):
            if step == a.steps:
                break
            x = images[order[b * batch:(b + 1) * batch]]
            lat, c, u = latent(batch, noise, a.model, g)
            fake = gnet(lat)
            dr, _ = Dn(x)
            df, q = Dn(fake.detach())
            ld = F.binary_cross_entropy_with_logits(dr, torch.ones_like(dr)) \
                + F.binary_cross_entropy_with_logits(df, torch.zeros_like(df))
            # The plain GAN's Q head learns on detached features, as a probe (as in infogan).
            ld = ld + (info_loss(q, c, u) if info else info_loss(Dn.q(Dn.trunk(fake.detach()).detach()), c, u))
            oD.zero_grad(set_to_none=True); ld.backward(); oD.step()
            for p in Dn.parameters(): p.requires_grad_(False)
            df, q = Dn(fake)
            lg = F.binary_cross_entropy_with_logits(df, torch.ones_like(df)) + (info_loss(q, c, u) if info else 0)
            oG.zero_grad(set_to_none=True); lg.backward(); oG.step()
            for p in Dn.parameters(): p.requires_grad_(True)
            step += 1
            if step % 500 == 0:
                print(f'step {step}/{a.steps}: d {ld.item():.3f} g {lg.item():.3f} ({time.time() - started:.0f} s)',
                      flush=True)
    tensors = {}
    def put(prefix, seq, names):
        for i, name in names.items():
            m = seq[i]
            for t in ['weight', 'bias', 'running_mean', 'running_var']:
                if hasattr(m, t) and getattr(m, t) is not None:
                    tensors[f'{prefix}.{name}.{t}'] = getattr(m, t).detach().float().contiguous()
    put('generator', gnet, g_names)
    put('discriminator', Dn.trunk, t_names)
    put('d_head', nn.Sequential(Dn.d), {0: 'fc'})
    put('q_head', Dn.q, {0: 'fc1', 1: 'bn1', 3: 'fc2'})
    config = {'arch': {'dataset': a.dataset, 'latent': {'noise': noise, 'categorical': [CAT], 'continuous': CONT}},
              'model': a.model, 'lambda_cat': 0.5, 'lambda_cont': 0.1, 'cont_std': 'fixed',
              'diffaug': {'color': False, 'translation': False, 'cutout': False},
              'lr_d': 2e-4, 'lr_g': 2e-4, 'beta1': 0.5, 'beta2': 0.999, 'batch_size': batch,
              'epochs': -(-a.steps // per_epoch), 'seed': a.seed}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_file(tensors, a.out, metadata={'format': 'infogan-checkpoint-1', 'producer': f'torch {torch.__version__}',
                                        'config': json.dumps(config), 'step': str(step)})
    print(f'wrote {a.out} after {step} steps in {time.time() - started:.0f} s')


if __name__ == '__main__':
    main()
