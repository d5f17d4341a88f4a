"""rekap digit-model training package (see training/README.md)."""

CLASSES = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "X", "blank"]
X_CLASS = 10
BLANK_CLASS = 11
