"""Real-language data (German, Spanish, Chinese) for the PreAlign real-languages setting, and the
scripts that rebuild it from pinned registry packages."""
