"""Task data, notebook 01: the items of each task in one schema, their roles, languages and token lengths.

``tasks`` reads XNLI and SIB-200 into one schema; ``errors`` names the file,
row and cause of a data fault; ``splits`` decides which items train,
validate, evaluate and measure drift; ``languages`` maps the tasks' codes onto
URIEL's; ``tokens`` measures token lengths and fertility. The later notebooks
draw their items through ``splits``.
"""
