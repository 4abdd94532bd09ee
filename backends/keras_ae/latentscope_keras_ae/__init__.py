"""latentscope backend plugin: the convolutional CelebA autoencoder in Keras 3."""
