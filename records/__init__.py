"""Records at scale: an archive of notes read into a records database by ExtractFlow (``sources`` lists and
shards the input, ``extract`` tags one shard into the store), and the disease -> treatment knowledge base built
from those records (``kb``)."""
