from .latent_vae import LatentVAE

__all__ = ['LatentVAE']
