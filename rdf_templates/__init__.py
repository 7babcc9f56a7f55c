"""Text parts of a bioimage.io package (RDF fields, model card); installed as
`sparsessp_bmz.rdf_templates` so that wheels carry them."""
