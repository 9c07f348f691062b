"""Training RegNets with ``model.fit`` on ``tf.distribute``: the paper's ImageNet recipe and fine-tuning."""
