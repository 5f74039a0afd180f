"""The study's report: the self-contained page and its CSVs (``page``), the recommendation without real images
(``recommendation``) and the page checked in headless Chromium (``browser``)."""
