"""Faces in a photo, in the order the data path meets them: found (`detection`), cut out to the FFHQ template
(`alignment`), their holes carried along for inpainting (`inpaint`), kept grey where the photo is (`gray`), parsed
into paste masks (`parsing`) and put back (`paste`)."""
