"""The research-data reference design: a synthetic health study (sample data)
for the research-sorter, research-checklist and research-combiner blocks."""
