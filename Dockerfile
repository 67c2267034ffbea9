# The Tidings worker / CLI image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tidings ./tidings
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY starters ./starters
COPY sandbox ./sandbox
COPY receiver ./receiver
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["tidings"]
CMD ["worker"]
