"""Helpers shared by the test modules."""

from jlstm import scan


def count_scan_traces(monkeypatch) -> list:
    """A list that gets one entry (the scan's signature) each time JAX traces jlstm's scan:
    the scan picks its form once per trace, never on a cached call."""
    traces = []
    real = scan._forward_form

    def counting(signature, cell):
        traces.append(signature)
        return real(signature, cell)

    monkeypatch.setattr(scan, "_forward_form", counting)
    return traces
