"""Migration scripts, applied in revision order by `trunkline.store.schema.upgrade`."""
