"""The SpineLabel click-to-correct Segment Editor effect (registered by the SpineLabel module)."""
