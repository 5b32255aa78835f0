import pytest
import torch

from mmseg_digseg.models.backbones import LatentVAE


def test_encodes_scaled_posterior_mean_and_stays_frozen():
    vae = LatentVAE(pretrained='checkpoints/tiny_sd')  # relative to the repository, from any cwd
    vae.train()
    assert not vae.vae.training and not any(p.requires_grad for p in vae.parameters())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (2, vae.latent_channels, 16, 16) and vae.downsample_factor == 4
    expected = vae.vae.encode(x).latent_dist.mean * vae.vae.config.scaling_factor
    torch.testing.assert_close(z, expected)
    assert not z.requires_grad


def test_binary_mask_round_trip():
    vae = LatentVAE(pretrained='checkpoints/tiny_sd')
    masks = torch.zeros(3, 64, 64)
    masks[0, 10:40, 12:50] = 1  # a box
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing='ij')
    masks[1] = ((yy - 30)**2 + (xx - 34)**2 < 14**2).float()  # a disc
    # masks[2] stays empty: an absent class
    with torch.no_grad():
        decoded = vae.decode_masks(vae.encode_masks(masks))
    assert decoded.shape == (3, 64, 64)
    pred = decoded > 0
    for i in range(2):
        inter = (pred[i] & masks[i].bool()).sum().item()
        union = (pred[i] | masks[i].bool()).sum().item()
        assert inter / union >= 0.9
    assert pred[2].float().mean() < 0.02


def test_slicing_decodes_the_same_masks():
    z = torch.randn(3, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = LatentVAE(pretrained='checkpoints/tiny_sd').decode_masks(z)
        sliced = LatentVAE(pretrained='checkpoints/tiny_sd', slicing=True)
        calls = []
        sliced.vae.decoder.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
        torch.testing.assert_close(sliced.decode_masks(z), whole, atol=1e-5, rtol=1e-4)
    assert calls == [1, 1, 1]  # one latent at a time through the decoder


def test_decoding_passes_gradients_to_latents_only():
    vae = LatentVAE(pretrained='checkpoints/tiny_sd')
    z = torch.zeros(1, vae.latent_channels, 16, 16, requires_grad=True)
    vae.decode_masks(z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in vae.parameters())


def test_gradient_checkpointing_keeps_fewer_decoder_activations_and_the_same_gradients():
    """With checkpointing the decoder's blocks keep only their inputs for the backward pass (counted with a
    saved-tensors hook) and recompute the rest; the latents' gradients are those of the plain decoder."""
    z = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    grads, saved = [], []
    for checkpointing in (False, True):
        vae = LatentVAE(pretrained='checkpoints/tiny_sd', gradient_checkpointing=checkpointing)
        latents = z.clone().requires_grad_(True)
        kept = []

        def pack(tensor):
            kept.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            masks = vae.decode_masks(latents)
        masks.square().sum().backward()
        grads.append(latents.grad)
        saved.append(sum(kept))
        assert all(p.grad is None for p in vae.parameters())
    assert saved[1] < 0.5 * saved[0]
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_missing_weights_path_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match='backbone.pretrained'):
        LatentVAE(pretrained=str(tmp_path / 'no_sd_here'))
