# The edgeloop image for docker-compose.yaml: the official Airflow image at the locked
# version and Python 3.11, with the lock (requirements.txt) and the edgeloop package.
FROM apache/airflow:3.3.2-python3.11

USER root
# g++ and make build and verify the C++ libraries of the deployment step.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make cmake \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt /opt/edgeloop/requirements.txt
RUN pip install --no-cache-dir -r /opt/edgeloop/requirements.txt

COPY --chown=airflow:root pyproject.toml README.md /opt/edgeloop/
COPY --chown=airflow:root plugins /opt/edgeloop/plugins
RUN pip install --no-cache-dir --no-deps /opt/edgeloop
