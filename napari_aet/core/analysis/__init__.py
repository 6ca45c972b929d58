"""Structure analysis of atom models: PDF, bond-orientational order, Voronoi density, voids, oxidation, phases."""
