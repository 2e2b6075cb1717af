"""Live grid signals: intensity providers behind one small interface (signal.py)."""
