"""The features stage and the one definition of the embedding of a crop."""
