"""xldrift: how fine-tuning moves each language's representation space.

A reproduction and extension of Philippy, Guo & Haddadan (SIGTYP 2023),
"Identifying the Correlation Between Language Distance and Cross-Lingual
Transfer in a Multilingual Representation Space".
"""

__version__ = "0.1.0"
