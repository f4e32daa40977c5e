"""The reference's copy of nilearn's image cropping (``crop_img``, ``crop_img_to``)."""
