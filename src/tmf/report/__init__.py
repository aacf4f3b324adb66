"""The report: the figures and tables of each notebook (``items``, drawn by ``figures`` / ``tables`` through
``build``, shown by ``display``), the notebooks' execution (``notebook``), the findings and the index page."""
