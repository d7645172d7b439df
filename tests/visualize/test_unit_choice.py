"""Which units the run page shows and what its captions say about them."""

import torch

from replearn.recording.topk import TopK
from replearn.visualize.unit_choice import activation_caption, failed_note, most_responsive


def test_most_responsive_ranks_by_mean_top_k():
    values = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 2.0], [2.0, 1.5], [2.0, 1.5]])  # (U, k)
    indices = torch.arange(10).reshape(5, 2)
    positions = torch.zeros(5, 2, 2, dtype=torch.long)
    positions[:, :, 0] = torch.arange(5).unsqueeze(1)
    units, top = most_responsive(TopK(values, indices, positions), 3)
    assert units == [2, 3, 4]  # ties keep the lower index first
    assert top.indices.tolist() == [[4, 5], [6, 7], [8, 9]] and top.positions[:, 0, 0].tolist() == [2, 3, 4]
    assert most_responsive(TopK(values, indices), 9)[0] == [2, 3, 4, 0, 1]
    assert failed_note(torch.tensor([1.0, 2.0])) == ""
    assert "1 of 2 ended at activation <= 0" in failed_note(torch.tensor([1.0, -2.0]))


def test_activation_caption_states_the_whole_layers_sparsity():
    act = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 3.0, 1.0]])  # (N=2, U=4): 4 of 8 values are 0
    text = activation_caption(act, [3, 2], "blocks.1", "unit", 2)
    assert "the 2 most responsive of the 4 units" in text and "50% of these inputs' activations are exactly 0" in text
    assert activation_caption(act, [0, 1, 2, 3], "head", "class logit", 2).startswith("Activations of all class logits")
