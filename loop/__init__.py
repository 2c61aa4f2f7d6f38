"""The round: the stages of one train-round, calling generation, training, labelling and evaluation."""
