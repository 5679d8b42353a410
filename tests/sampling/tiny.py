"""The fixed, time-dependent network the sampler tests share: enough structure that a wrong coefficient shows."""
import torch


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(2, 2, 3, padding=1)

    def forward(self, x, t):
        return torch.tanh(self.conv(x)) * (1.0 + t.to(x.dtype) / 1000.0).view(-1, 1, 1, 1, 1)


def x_T():
    return torch.randn(1, 2, 8, 8, 8, generator=torch.Generator().manual_seed(1))


def rel(a, b):
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()
