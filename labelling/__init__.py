"""Who labels which pair: assignment, pair selection, simulated annotators and their oracles."""
