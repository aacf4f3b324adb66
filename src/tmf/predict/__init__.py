"""Land-cover maps of whole tiles (issue 13 item 4): sliding-window prediction with blended overlaps
(:mod:`.window`), GeoTIFFs on the input tiles' grids (:mod:`.geotiff`), the job of one split (:mod:`.run`),
previews for the report (:mod:`.previews`)."""
