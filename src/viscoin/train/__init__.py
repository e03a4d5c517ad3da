"""Training: losses, the classifier / GAN / VisCoIN loops, checkpoints, resume, distributed helpers."""
