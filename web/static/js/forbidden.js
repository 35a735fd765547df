// The page a signed-in account sees in place of a page its role may not open.
import { installHeader } from "./nav.js";

installHeader();
