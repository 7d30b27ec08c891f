"""Where things are kept: paths and URLs (``locations``), the cache's layout (``store``), stage and result
folders anywhere (``folders``), claims between runs (``claims``), and the cache's garbage collector
(``cache_gc``). Base layer: it knows files, not stages or models.
"""
