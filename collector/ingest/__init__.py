"""A report's way in: admission (refuse what cannot be answered in time), acceptance (auth, ownership,
parse, clean), and the results the collector derives from each report (clock skew, 人机信息相符)."""
