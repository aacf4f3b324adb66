"""MiniFrance facts, data sources, readers and tinyMiniFrance subsampling."""
