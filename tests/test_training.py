"""Training with tconv modules matches torch step by step; DDP works unchanged."""

import copy
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import tconv
from tconv.testing import assert_close


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1, padding_mode="replicate"), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.ReLU(),
        )
        self.classifier = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class SmallDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(2, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(8, 3, 3, stride=1, padding=1, bias=False),
        )

    def forward(self, x):
        return self.net(x)


def train_side_by_side(model_type, input, target, loss_fn, steps=3):
    torch.manual_seed(0)
    reference = model_type().double()
    ours = tconv.nn.convert(copy.deepcopy(reference).float())
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (reference, ours)]
    for step in range(steps):
        losses = []
        for model, optimizer, dtype in zip((reference, ours), optimizers, (torch.float64, torch.float32)):
            optimizer.zero_grad()
            loss = loss_fn(model(input.to(dtype)), target if target.dtype == torch.long else target.to(dtype))
            loss.backward()
            losses.append(loss)
        assert_close(losses[1].detach().reshape(1), losses[0].detach().reshape(1), torch.float32, f"loss step {step}")
        for (name, theirs), mine in zip(reference.named_parameters(), ours.parameters()):
            assert_close(mine.grad, theirs.grad, torch.float32, f"{name}.grad step {step}")
        for optimizer in optimizers:
            optimizer.step()


def test_small_cnn_trains_like_torch():
    input = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    target = torch.randint(0, 4, (4,))
    train_side_by_side(SmallCNN, input, target, torch.nn.functional.cross_entropy)


def test_small_decoder_trains_like_torch():
    input = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    target = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    train_side_by_side(SmallDecoder, input, target, torch.nn.functional.mse_loss)


def _ddp_worker(rank, world_size, init_file, input, target, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = tconv.nn.convert(SmallDecoder())
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    shard = slice(rank * 2, rank * 2 + 2)
    torch.nn.functional.mse_loss(ddp(input[shard]), target[shard]).backward()
    if rank == 0:
        torch.save([p.grad for p in model.parameters()], result_file)
    dist.barrier()  # neither rank tears gloo down while the other still uses it (an abort in its threads)
    dist.destroy_process_group()


def test_ddp_gloo_two_processes_matches_single_process():
    input, target = torch.randn(4, 2, 8, 8), torch.randn(4, 3, 8, 8)
    with tempfile.TemporaryDirectory() as folder:
        init_file, result_file = os.path.join(folder, "init"), os.path.join(folder, "grads.pt")
        mp.spawn(_ddp_worker, args=(2, init_file, input, target, result_file), nprocs=2, join=True)
        ddp_grads = torch.load(result_file)
    torch.manual_seed(0)
    single = tconv.nn.convert(SmallDecoder())
    torch.nn.functional.mse_loss(single(input), target).backward()
    for mine, theirs in zip(ddp_grads, (p.grad for p in single.parameters())):
        assert_close(mine, theirs.double(), torch.float32, "DDP gradient")
