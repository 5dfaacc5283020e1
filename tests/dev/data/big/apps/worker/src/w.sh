w
